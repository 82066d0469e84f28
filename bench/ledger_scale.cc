// The storage targets of DESIGN.md section 7 that a micro-benchmark cannot
// show: restart time with a large ledger and resident memory with many
// budgets. Fills a fresh data directory through the ledger API (budgets,
// then reservations of which --reported_percent are reported), closes it,
// and times
// reopening it (which rebuilds memory from RocksDB) and the RSS after.
//
//   build/bench/bursar_ledger_scale --budgets=100000 --holds=1000000 \
//     --dir=/tmp/scale --keep
//   build/bench/bursar_ledger_scale --dir=/tmp/scale --reopen_only
//
// After the reopen it also times one ForEachOpenHold pass (bursard reads
// the terms of the open holds that took concurrency slots at start-up, to
// restore its pools; --pool_share says which reservations took one), and
// with --rate_keys=N fills a rate limiter (limits/) with N live keys the way
// bursard's Decider holds them (one per-user rule, a one-minute window of
// requests and tokens), so that the RSS of 100k budgets and 1M rate keys is
// measured in one process:
//
//   build/bench/bursar_ledger_scale --budgets=100000 --holds=0 \
//     --rate_keys=1000000
//
// Prints one line per phase; the data directory is removed at the end
// (--keep to keep it).

#include <sys/resource.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/string_view.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "limits/rate_limiter.h"
#include "storage/labels.h"
#include "storage/rocks_storage.h"

ABSL_FLAG(int, budgets, 100'000, "budgets to create (one per team)");
ABSL_FLAG(int, holds, 1'000'000,
          "reservations to make, spread over the teams");
ABSL_FLAG(int, reported_percent, 50,
          "share of the reservations that are reported (settled), 0 to 100; "
          "the others stay open, as calls in flight at a crash would");
ABSL_FLAG(bool, request_ids, false,
          "give every reservation a request_id (a 36-character UUID-like "
          "string), as gateways do");
ABSL_FLAG(int, terms_bytes, 0,
          "bytes of terms stored with every reservation (bursard stores "
          "about 500: model, prices, rate charges, the answer)");
ABSL_FLAG(double, pool_share, 1.0,
          "share of the reservations that take a concurrency slot, 0 to 1 "
          "(chosen at random, fixed seed): they are reserved with "
          "visit_on_restore and, with --terms_bytes, their terms name the "
          "pool \"bench-slots\"; the others are reserved without it, as "
          "bursard reserves a call that takes no slot (decision 025). 1: "
          "every reservation is visited at restart, as before that change");
ABSL_FLAG(std::string, dir, "", "data directory (default: a new temp dir)");
ABSL_FLAG(bool, keep, false, "keep the data directory");
ABSL_FLAG(int, rate_keys, 0,
          "after the reopen, live rate-limit keys to add (one per user, as "
          "bursard keeps them)");
ABSL_FLAG(bool, reopen_only, false,
          "only reopen --dir (filled by an earlier run with --keep), so that "
          "RSS is this process's alone");

namespace bursar::storage {
namespace {

// `bytes` (0: none) of terms that bursard can parse, so that it can start on
// the filled data dir: a server/hold_terms.proto HoldTerms whose `model`
// (field 1) is padded to length. Encoded by hand: this bench links storage
// only, which never sees the server's protos.
std::string ParseableTerms(int bytes) {
  if (bytes <= 0) return "";
  std::string terms = "\x0a";  // field 1, length-delimited
  const int length = std::max(0, bytes - 3);
  for (unsigned v = static_cast<unsigned>(length); ; v >>= 7) {
    if (v < 0x80) {
      terms.push_back(static_cast<char>(v));
      break;
    }
    terms.push_back(static_cast<char>((v & 0x7f) | 0x80));
  }
  terms.append(static_cast<size_t>(length), 'm');
  return terms;
}

// `terms` with HoldTerms.pools (field 8) naming one pool: the terms of a
// call that took a concurrency slot.
std::string WithPool(std::string terms, absl::string_view pool) {
  if (terms.empty()) return terms;
  terms.push_back('\x42');  // field 8, length-delimited
  terms.push_back(static_cast<char>(pool.size()));
  terms.append(pool.data(), pool.size());
  return terms;
}

double RssMib() {
  long pages = 0, resident = 0;
  if (FILE* f = std::fopen("/proc/self/statm", "r")) {
    if (std::fscanf(f, "%ld %ld", &pages, &resident) != 2) resident = 0;
    std::fclose(f);
  }
  return static_cast<double>(resident) * 4096 / (1 << 20);
}

// Of the RSS, how much is in transparent huge pages.
double HugePagesMib() {
  double kib = 0;
  if (FILE* f = std::fopen("/proc/self/smaps_rollup", "r")) {
    char line[256];
    while (std::fgets(line, sizeof(line), f) != nullptr) {
      if (std::sscanf(line, "AnonHugePages: %lf kB", &kib) == 1) break;
    }
    std::fclose(f);
  }
  return kib / 1024;
}

// CPU time of the whole process (every thread, user + system).
absl::Duration CpuTime() {
  struct rusage usage;
  getrusage(RUSAGE_SELF, &usage);
  return absl::DurationFromTimeval(usage.ru_utime) +
         absl::DurationFromTimeval(usage.ru_stime);
}

int Run() {
  std::string dir = absl::GetFlag(FLAGS_dir);
  if (dir.empty()) {
    dir = (std::filesystem::temp_directory_path() /
           absl::StrCat("bursar-ledger-scale-", getpid()))
              .string();
  }
  const int budgets = absl::GetFlag(FLAGS_budgets);
  const int holds = absl::GetFlag(FLAGS_holds);
  const int reported_percent = absl::GetFlag(FLAGS_reported_percent);
  if (reported_percent < 0 || reported_percent > 100) {
    std::fprintf(stderr, "--reported_percent must be 0 to 100, not %d\n",
                 reported_percent);
    return 1;
  }
  const double pool_share = absl::GetFlag(FLAGS_pool_share);
  if (!(pool_share >= 0 && pool_share <= 1)) {
    std::fprintf(stderr, "--pool_share must be 0 to 1, not %g\n", pool_share);
    return 1;
  }
  RocksLedgerOptions options;
  options.path = dir;
  options.sync = SyncMode::kNone;
  // Keep every settled hold for the whole run, as a busy hour would.
  options.settled_retention = absl::Hours(24);
  const absl::Time now = absl::Now();
  if (!absl::GetFlag(FLAGS_reopen_only)) {
    absl::StatusOr<RocksStorage> storage = OpenRocksStorage(options);
    if (!storage.ok()) {
      std::fprintf(stderr, "open: %s\n", storage.status().ToString().c_str());
      return 1;
    }
    Ledger& ledger = *storage->ledger;
    absl::Time start = absl::Now();
    for (int i = 0; i < budgets; ++i) {
      BudgetSpec spec;
      spec.name = absl::StrCat("team-", i);
      spec.selector = {{"team", absl::StrCat("t", i)}};
      spec.period = Period::kMonth;
      spec.amount_nanos = 1'000'000'000'000;
      if (!ledger.SetBudget(spec, Actor{"bench", "fill"}, now).ok()) {
        std::fprintf(stderr, "SetBudget failed\n");
        return 1;
      }
    }
    std::printf("filled %d budgets in %s\n", budgets,
                absl::FormatDuration(absl::Now() - start).c_str());
    start = absl::Now();
    const std::string terms = ParseableTerms(absl::GetFlag(FLAGS_terms_bytes));
    const std::string pool_terms = WithPool(terms, "bench-slots");
    const bool request_ids = absl::GetFlag(FLAGS_request_ids);
    std::string request_id;
    std::mt19937_64 random(25);
    std::bernoulli_distribution takes_slot(pool_share);
    int with_slot = 0, open_with_slot = 0;
    for (int i = 0; i < holds; ++i) {
      LabelSet labels;
      labels.Add("team", absl::StrCat("t", i % budgets));
      labels.Add("model", "gpt-4.1-mini");
      ReserveRequest request;
      request.labels = &labels;
      request.estimate_nanos = 1000;
      request.ttl = absl::Hours(12);
      request.visit_on_restore = takes_slot(random);
      request.terms = request.visit_on_restore ? pool_terms : terms;
      const bool reported = i % 100 < reported_percent;
      if (request.visit_on_restore) {
        ++with_slot;
        if (!reported) ++open_with_slot;
      }
      if (request_ids) {
        request_id = absl::StrFormat("%08x-0000-4000-8000-%012x", i, i * 7919);
        request.request_id = request_id;
      }
      absl::StatusOr<ReserveResult> reserved = ledger.Reserve(request, now);
      if (!reserved.ok() || reserved->kind != ReserveResult::Kind::kReserved) {
        std::fprintf(stderr, "Reserve failed\n");
        return 1;
      }
      if (reported &&
          !ledger
               .Settle(reserved->reservation_id, 700, now, nullptr, {}, nullptr)
               .ok()) {
        std::fprintf(stderr, "Settle failed\n");
        return 1;
      }
    }
    std::printf(
        "made %d reservations (%d%% reported; %d took a slot, %d of them "
        "open) in %s\n",
        holds, reported_percent, with_slot, open_with_slot,
        absl::FormatDuration(absl::Now() - start).c_str());
  }
  const double rss_before = RssMib();
  const absl::Duration cpu_start = CpuTime();
  const absl::Time start = absl::Now();
  absl::StatusOr<RocksStorage> reopened = OpenRocksStorage(options);
  const absl::Duration took = absl::Now() - start;
  const absl::Duration cpu = CpuTime() - cpu_start;
  if (!reopened.ok()) {
    std::fprintf(stderr, "reopen: %s\n", reopened.status().ToString().c_str());
    return 1;
  }
  std::printf(
      "reopened with %zu budgets and %zu open holds in %s (CPU %s); RSS "
      "%.1f MiB, %.0f MiB of it in huge pages (%.1f MiB before reopening)\n",
      reopened->ledger->ListBudgets().size(), reopened->ledger->open_holds(),
      absl::FormatDuration(took).c_str(), absl::FormatDuration(cpu).c_str(),
      RssMib(), HugePagesMib(), rss_before);
  Ledger& ledger = *reopened->ledger;

  // bursard's RestoreInFlight: the open holds that took a slot (and any
  // stored before decision 025), with their terms.
  const absl::Time pass_start = absl::Now();
  const absl::Duration pass_cpu_start = CpuTime();
  size_t visited = 0, terms_bytes = 0;
  ledger.ForEachOpenHold([&](const HoldView& hold) {
    ++visited;
    terms_bytes += hold.terms.size();
  });
  std::printf(
      "visited %zu open holds (%zu bytes of terms) in %s (CPU %s); "
      "RSS %.1f MiB\n",
      visited, terms_bytes,
      absl::FormatDuration(absl::Now() - pass_start).c_str(),
      absl::FormatDuration(CpuTime() - pass_cpu_start).c_str(), RssMib());

  const int rate_keys = absl::GetFlag(FLAGS_rate_keys);
  if (rate_keys > 0) {
    // As the Decider holds them: one limiter, a per-user rule with
    // requests_per_minute and tokens_per_minute, a key per user.
    const double rss_ledger = RssMib();
    const std::vector<limits::WindowLimit> windows = {
        {absl::Minutes(1), 120, 50'000}};
    limits::RateLimiter limiter;
    std::vector<limits::RateCharge> charges;
    const absl::Time fill_start = absl::Now();
    for (int i = 0; i < rate_keys; ++i) {
      const std::string key = absl::StrCat("user-", i);
      limits::RateAsk ask{"per-user", key, windows};
      charges.clear();
      if (limiter.Acquire({&ask, 1}, 1700, now, false, &charges).has_value()) {
        std::fprintf(stderr, "rate limit denied key %d\n", i);
        return 1;
      }
    }
    const double rss = RssMib();
    std::printf(
        "added %zu live rate keys in %s; RSS %.1f MiB (ledger %.1f MiB + "
        "rate keys %.1f MiB)\n",
        limiter.size(), absl::FormatDuration(absl::Now() - fill_start).c_str(),
        rss, rss_ledger, rss - rss_ledger);
  }
  reopened->ledger.reset();
  reopened->policy_versions.reset();
  if (!absl::GetFlag(FLAGS_keep)) std::filesystem::remove_all(dir);
  return 0;
}

}  // namespace
}  // namespace bursar::storage

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  return bursar::storage::Run();
}
