// The ledger's hot path (issue 6: "ledger reserve + settle"): RocksLedger
// Reserve and Settle on a real RocksDB database in a temporary directory,
// opened as bursard opens it (OpenRocksStorage: ledger and usage rollups on
// one database), with 10,000 budgets of which every call matches three: the
// organisation's (per month), its team's (per day, New York time) and its
// feature's (per month).
//
// Every call is what bursard's Decider asks of the ledger: labels model,
// provider, team, feature, user, app and env; a unique 36-character
// request_id; 500 bytes of terms (the size of bursard's serialized
// HoldTerms); a $0.05 estimate, settled at a smaller cost.
//
//   BM_ReserveSettle               Reserve + Settle, --sync=none, without
//                                  usage rollups: the ledger alone
//   BM_ReserveGetHoldSettleUsage   Reserve + GetHold + Settle with a usage
//                                  rollup update, --sync=none: all the
//                                  storage work of one Check + Report
//   BM_ReserveSettleGroupWait      --sync=group, each call waits for the
//                                  fsync that covers it (one writer)
//   BM_ReserveSettleGroupDeferred  --sync=group, writes deferred as
//                                  bursard's handlers do (WhenDurable), so
//                                  consecutive calls share fsyncs
//   BM_ReserveSettleThreads/threads:N  Reserve + Settle, --sync=none, from
//                                  N threads at once on one ledger
//
// The global allocation functions are replaced by counting ones that count
// per thread: `allocs_per_op` is what the calling thread allocated per
// Reserve + Settle pair (RocksDB's background flushes and the WAL syncer
// are not counted; allocations made with malloc directly are not seen).
// BM_ReserveSettle also times Reserve and Settle separately (`reserve_ns`,
// `settle_ns`, means; each includes ~20 ns of clock reads) and reports the
// p50 and p99 of single pairs.
//
//   build/bench/bursar_ledger_benchmark --benchmark_repetitions=5 \
//     --benchmark_report_aggregates_only=true
//
// The database lives under $TMPDIR (else /tmp) and is deleted at the end.

#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <new>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/civil_time.h"
#include "absl/time/time.h"
#include "bench/run_benchmarks.h"
#include "benchmark/benchmark.h"
#include "storage/budget.h"
#include "storage/labels.h"
#include "storage/ledger.h"
#include "storage/rocks_storage.h"
#include "storage/usage_store.h"
#include "tests/support/alloc_counter.h"

namespace {

// Reads as the allocations made by the calling thread so far
// (tests/support/alloc_counter.h replaces the global operator new of this
// binary with a counting one).
struct ThreadAllocationCount {
  operator int64_t() const { return bursar::testing::ThreadAllocations(); }
} thread_allocations;

}  // namespace

namespace bursar::storage {
namespace {

constexpr int kTeams = 99;
constexpr int kFeatures = 9'900;  // + 99 teams + 1 org = 10,000 budgets
constexpr int kUsers = 1'000;
constexpr int64_t kEstimateNanos = 50'000'000;  // $0.05
constexpr int64_t kCostNanos = 21'300'000;      // what the call really cost
constexpr size_t kTermsBytes = 500;

// A ledger on its own database with the 10,000 budgets, and what every
// call needs prepared (names, labels' strings, usage updates), so that the
// loop builds nothing the Decider would not build.
class LedgerFixture {
 public:
  // Opens a fresh database under a new temporary directory; aborts on
  // failure (a benchmark without its database measures nothing).
  explicit LedgerFixture(SyncMode sync) {
    std::error_code error;
    const std::filesystem::path base =
        std::filesystem::temp_directory_path(error);
    dir_ = (error ? std::filesystem::path("/tmp") : base) /
           absl::StrCat("bursar-ledger-bench-", ::getpid(), "-",
                        sync == SyncMode::kNone ? "none" : "group");
    std::filesystem::remove_all(dir_, error);
    // The budgets are written with --sync=none (10,000 fsyncs would take
    // seconds), then the database is reopened in the mode under test.
    RocksLedgerOptions options;
    options.path = dir_.string();
    options.sync = SyncMode::kNone;
    absl::StatusOr<RocksStorage> storage = OpenRocksStorage(options);
    if (!storage.ok()) Die("open", storage.status());
    storage_ = *std::move(storage);

    now_ = absl::FromCivil(absl::CivilSecond(2026, 11, 23, 15, 0, 0),
                           absl::UTCTimeZone());
    const Actor actor{"bench", "ledger benchmark", "finance"};
    BudgetSpec org;
    org.name = "org";
    org.period = Period::kMonth;
    org.amount_nanos = int64_t{1} << 60;
    if (auto s = ledger().SetBudget(org, actor, now_); !s.ok()) {
      Die("SetBudget org", s.status());
    }
    for (int t = 0; t < kTeams; ++t) {
      teams_.push_back(absl::StrCat("team-", t));
      BudgetSpec spec;
      spec.name = teams_.back();
      spec.selector = {{"team", teams_.back()}};
      spec.period = Period::kDay;
      spec.timezone = "America/New_York";
      spec.amount_nanos = int64_t{1} << 58;
      if (auto s = ledger().SetBudget(spec, actor, now_); !s.ok()) {
        Die("SetBudget team", s.status());
      }
    }
    for (int f = 0; f < kFeatures; ++f) {
      features_.push_back(absl::StrCat("feature-", f));
      BudgetSpec spec;
      spec.name = features_.back();
      spec.selector = {{"feature", features_.back()}};
      spec.period = Period::kMonth;
      spec.amount_nanos = int64_t{1} << 56;
      if (auto s = ledger().SetBudget(spec, actor, now_); !s.ok()) {
        Die("SetBudget feature", s.status());
      }
      // What UsageAttribution::ForReport gives Settle for such a call.
      UsageUpdate update;
      update.time = now_;
      update.model = "gpt-4.1-mini";
      update.provider = "openai";
      update.dimensions = {{"app", "support-bot"},
                           {"feature", features_.back()},
                           {"team", teams_[f % kTeams]}};
      update.budgets = {{"feature", ""}, {"org", ""}, {"team", ""}};
      update.budgets[0].first = features_.back();
      update.budgets[2].first = teams_[f % kTeams];
      update.counts.cost_nanos = kCostNanos;
      update.counts.requests = 1;
      update.counts.successes = 1;
      update.counts.input_tokens = 1200;
      update.counts.cached_input_tokens = 400;
      update.counts.output_tokens = 500;
      update.counts.latency_reports = 1;
      updates_.push_back(std::move(update));
    }
    for (int u = 0; u < kUsers; ++u) users_.push_back(absl::StrCat("u", u));
    if (sync != SyncMode::kNone) {
      storage_ = RocksStorage();  // closes the database
      options.sync = sync;
      storage = OpenRocksStorage(options);
      if (!storage.ok()) Die("reopen", storage.status());
      storage_ = *std::move(storage);
    }
    if (ledger().ListBudgets().size() != 1 + kTeams + kFeatures) {
      Die("ListBudgets", absl::InternalError("the budgets are not all there"));
    }
  }

  ~LedgerFixture() {
    storage_ = RocksStorage();  // closes the database
    std::error_code error;
    std::filesystem::remove_all(dir_, error);
  }

  Ledger& ledger() { return *storage_.ledger; }
  absl::Time now() const { return now_; }
  // When call number `n` is made: one microsecond after the one before
  // (wrapping after 71 minutes, within the budgets' day), so reservation
  // ids grow with the calls as they do in bursard.
  absl::Time TimeOf(uint64_t n) const {
    return now_ + absl::Microseconds(n % (uint64_t{1} << 32));
  }

  // The labels of call number `n` (the Decider's usage labels: model and
  // provider, then the caller's).
  void LabelsOf(uint64_t n, LabelSet* labels) const {
    const int feature = static_cast<int>(n % kFeatures);
    labels->Add("model", "gpt-4.1-mini");
    labels->Add("provider", "openai");
    labels->Add("app", "support-bot");
    labels->Add("env", "prod");
    labels->Add("feature", features_[feature]);
    labels->Add("team", teams_[feature % kTeams]);
    labels->Add("user", users_[n % kUsers]);
  }
  const UsageUpdate& UpdateOf(uint64_t n) const {
    return updates_[n % kFeatures];
  }
  // A request_id unique in this process, in a caller's buffer (no
  // allocation): 36 characters, shaped like a UUID.
  absl::string_view RequestIdOf(uint64_t n, char (&buffer)[40]) const {
    const int size = std::snprintf(
        buffer, sizeof(buffer), "%08llx-0000-4000-8000-%012llx",
        static_cast<unsigned long long>(n & 0xffffffffu),  // NOLINT
        static_cast<unsigned long long>(n));               // NOLINT
    return absl::string_view(buffer, static_cast<size_t>(size));
  }
  const std::string& terms() const { return terms_; }
  // Calls numbered across all benchmarks on this fixture, so request_ids
  // never repeat.
  uint64_t NextCall() { return next_call_++; }

 private:
  [[noreturn]] static void Die(const char* what, const absl::Status& status) {
    std::fprintf(stderr, "ledger benchmark: %s: %s\n", what,
                 status.ToString().c_str());
    std::abort();
  }

  std::filesystem::path dir_;
  RocksStorage storage_;
  absl::Time now_;
  std::vector<std::string> teams_;
  std::vector<std::string> features_;
  std::vector<std::string> users_;
  std::vector<UsageUpdate> updates_;
  const std::string terms_ = std::string(kTermsBytes, 't');
  uint64_t next_call_ = 0;
};

LedgerFixture*& FixtureSlot(SyncMode sync) {
  static LedgerFixture* none = nullptr;
  static LedgerFixture* group = nullptr;
  return sync == SyncMode::kNone ? none : group;
}

LedgerFixture& TheFixture(SyncMode sync) {
  LedgerFixture*& slot = FixtureSlot(sync);
  if (slot == nullptr) slot = new LedgerFixture(sync);
  return *slot;
}

// One Reserve as the Decider makes it; false (with the error on `state`)
// unless it reserved. `durable_ticket` non-null: defer durability.
bool ReserveOne(benchmark::State& state, LedgerFixture& f, uint64_t n,
                std::string* reservation_id, uint64_t* durable_ticket) {
  char request_id[40];
  LabelSet labels;
  f.LabelsOf(n, &labels);
  ReserveRequest request;
  request.labels = &labels;
  request.estimate_nanos = kEstimateNanos;
  request.request_id = f.RequestIdOf(n, request_id);
  request.terms = f.terms();
  request.defer_durability = durable_ticket != nullptr;
  absl::StatusOr<ReserveResult> reserved =
      f.ledger().Reserve(request, f.TimeOf(n));
  if (!reserved.ok() || reserved->kind != ReserveResult::Kind::kReserved ||
      reserved->standings.size() != 3) {
    state.SkipWithError(
        reserved.ok()
            ? absl::StrCat("Reserve did not reserve on 3 budgets (kind ",
                           static_cast<int>(reserved->kind), ", ",
                           reserved->standings.size(), " standings)")
                  .c_str()
            : reserved.status().ToString().c_str());
    return false;
  }
  *reservation_id = std::move(reserved->reservation_id);
  if (durable_ticket != nullptr) *durable_ticket = reserved->durable_ticket;
  return true;
}

bool SettleOne(benchmark::State& state, LedgerFixture& f, uint64_t n,
               const std::string& reservation_id, const UsageUpdate* usage,
               uint64_t* durable_ticket) {
  absl::StatusOr<SettleResult> settled = f.ledger().Settle(
      reservation_id, kCostNanos, f.TimeOf(n), usage, {}, durable_ticket);
  if (!settled.ok() || settled->already_reported ||
      settled->cost_nanos != kCostNanos) {
    state.SkipWithError(settled.ok() ? "Settle did not charge the cost"
                                     : settled.status().ToString().c_str());
    return false;
  }
  return true;
}

double Percentile(std::vector<int64_t>& sorted_samples, double p) {
  const size_t index = std::min(
      sorted_samples.size() - 1,
      static_cast<size_t>(p * static_cast<double>(sorted_samples.size())));
  return static_cast<double>(sorted_samples[index]);
}

void BM_ReserveSettle(benchmark::State& state) {
  LedgerFixture& f = TheFixture(SyncMode::kNone);
  std::vector<int64_t> pair_nanos;
  pair_nanos.reserve(1 << 20);
  std::string reservation_id;
  reservation_id.reserve(64);
  int64_t reserve_nanos = 0, settle_nanos = 0;
  int64_t reserve_allocs = 0, settle_allocs = 0;
  for (auto _ : state) {
    const uint64_t n = f.NextCall();
    const int64_t allocs_before = thread_allocations;
    const auto start = std::chrono::steady_clock::now();
    if (!ReserveOne(state, f, n, &reservation_id, nullptr)) break;
    const auto reserved = std::chrono::steady_clock::now();
    const int64_t allocs_reserved = thread_allocations;
    if (!SettleOne(state, f, n, reservation_id, nullptr, nullptr)) break;
    const auto end = std::chrono::steady_clock::now();
    reserve_allocs += allocs_reserved - allocs_before;
    settle_allocs += thread_allocations - allocs_reserved;
    const int64_t r =
        std::chrono::duration_cast<std::chrono::nanoseconds>(reserved - start)
            .count();
    const int64_t s =
        std::chrono::duration_cast<std::chrono::nanoseconds>(end - reserved)
            .count();
    reserve_nanos += r;
    settle_nanos += s;
    if (pair_nanos.size() < pair_nanos.capacity()) pair_nanos.push_back(r + s);
  }
  if (pair_nanos.empty()) return;
  const double iterations =
      static_cast<double>(std::max<int64_t>(1, state.iterations()));
  state.counters["reserve_ns"] =
      static_cast<double>(reserve_nanos) / iterations;
  state.counters["settle_ns"] = static_cast<double>(settle_nanos) / iterations;
  state.counters["allocs_per_op"] =
      static_cast<double>(reserve_allocs + settle_allocs) / iterations;
  state.counters["reserve_allocs"] =
      static_cast<double>(reserve_allocs) / iterations;
  state.counters["settle_allocs"] =
      static_cast<double>(settle_allocs) / iterations;
  std::sort(pair_nanos.begin(), pair_nanos.end());
  state.counters["p50_ns"] = Percentile(pair_nanos, 0.50);
  state.counters["p99_ns"] = Percentile(pair_nanos, 0.99);
}
BENCHMARK(BM_ReserveSettle);

// What one Check + Report asks of storage in bursard: Reserve; GetHold (the
// terms, read back from RocksDB); Settle with the usage rollup update.
void BM_ReserveGetHoldSettleUsage(benchmark::State& state) {
  LedgerFixture& f = TheFixture(SyncMode::kNone);
  std::string reservation_id;
  reservation_id.reserve(64);
  const int64_t allocs_before = thread_allocations;
  for (auto _ : state) {
    const uint64_t n = f.NextCall();
    if (!ReserveOne(state, f, n, &reservation_id, nullptr)) break;
    absl::StatusOr<HoldView> hold = f.ledger().GetHold(reservation_id);
    if (!hold.ok() || hold->terms.size() != kTermsBytes) {
      state.SkipWithError("GetHold did not return the terms");
      break;
    }
    if (!SettleOne(state, f, n, reservation_id, &f.UpdateOf(n), nullptr)) break;
  }
  state.counters["allocs_per_op"] =
      static_cast<double>(thread_allocations - allocs_before) /
      static_cast<double>(std::max<int64_t>(1, state.iterations()));
}
BENCHMARK(BM_ReserveGetHoldSettleUsage);

// --sync=group with one writer that waits for every write: each Reserve and
// each Settle waits for an fsync of its own (nobody else writes to share
// it), so this measures the fsync latency the group window adds to a
// lone call, not the ledger's work.
void BM_ReserveSettleGroupWait(benchmark::State& state) {
  LedgerFixture& f = TheFixture(SyncMode::kGroup);
  std::string reservation_id;
  reservation_id.reserve(64);
  const int64_t allocs_before = thread_allocations;
  for (auto _ : state) {
    const uint64_t n = f.NextCall();
    if (!ReserveOne(state, f, n, &reservation_id, nullptr)) break;
    if (!SettleOne(state, f, n, reservation_id, nullptr, nullptr)) break;
  }
  state.counters["allocs_per_op"] =
      static_cast<double>(thread_allocations - allocs_before) /
      static_cast<double>(std::max<int64_t>(1, state.iterations()));
}
BENCHMARK(BM_ReserveSettleGroupWait)->UseRealTime();

// --sync=group as bursard's handlers use it: Reserve and Settle return once
// written, and WhenDurable reports when the fsync covering the Settle is
// done (the Settle's ticket covers the Reserve's write too). Nothing waits
// inside the loop; the end of the loop waits for the last fsync, so the
// real time per pair includes every fsync the run needed. The callbacks
// run on the WAL syncer's thread (not counted in allocs_per_op).
void BM_ReserveSettleGroupDeferred(benchmark::State& state) {
  LedgerFixture& f = TheFixture(SyncMode::kGroup);
  std::string reservation_id;
  reservation_id.reserve(64);
  absl::Mutex mu;
  int64_t pending = 0;   // guarded by mu
  absl::Status failure;  // guarded by mu
  const int64_t allocs_before = thread_allocations;
  for (auto _ : state) {
    const uint64_t n = f.NextCall();
    uint64_t reserve_ticket = 0, settle_ticket = 0;
    if (!ReserveOne(state, f, n, &reservation_id, &reserve_ticket)) break;
    if (!SettleOne(state, f, n, reservation_id, nullptr, &settle_ticket)) break;
    {
      absl::MutexLock lock(&mu);
      ++pending;
    }
    f.ledger().WhenDurable(settle_ticket, [&](absl::Status status) {
      absl::MutexLock lock(&mu);
      --pending;
      if (!status.ok()) failure = status;
    });
  }
  const int64_t allocs = thread_allocations - allocs_before;
  absl::MutexLock lock(&mu);
  mu.Await(absl::Condition(
      +[](int64_t* p) { return *p == 0; }, &pending));
  if (!failure.ok()) state.SkipWithError(failure.ToString().c_str());
  state.counters["allocs_per_op"] =
      static_cast<double>(allocs) /
      static_cast<double>(std::max<int64_t>(1, state.iterations()));
}
BENCHMARK(BM_ReserveSettleGroupDeferred)->UseRealTime();

// Reserve + Settle from several threads at once on one ledger, --sync=none,
// without usage rollups: what gRPC's handler threads do. Every call matches
// the org budget, so all threads change the same counters. Real time per
// pair over all threads (items_per_second is pairs per second in total);
// `blocked_per_pair` counts the benchmark threads' voluntary context
// switches (getrusage RUSAGE_THREAD), a measure of lock hand-offs that the
// machine's other load disturbs less than the time does.
void BM_ReserveSettleThreads(benchmark::State& state) {
  static absl::Mutex fixture_mu;
  LedgerFixture* fixture;
  {
    absl::MutexLock lock(&fixture_mu);
    fixture = &TheFixture(SyncMode::kNone);
  }
  LedgerFixture& f = *fixture;
  // Call numbers far above NextCall's, so request_ids never repeat.
  static std::atomic<uint64_t> next_call{uint64_t{1} << 40};
  std::string reservation_id;
  reservation_id.reserve(64);
  rusage before{}, after{};
  getrusage(RUSAGE_THREAD, &before);
  for (auto _ : state) {
    const uint64_t n = next_call.fetch_add(1, std::memory_order_relaxed);
    if (!ReserveOne(state, f, n, &reservation_id, nullptr)) break;
    if (!SettleOne(state, f, n, reservation_id, nullptr, nullptr)) break;
  }
  getrusage(RUSAGE_THREAD, &after);
  state.SetItemsProcessed(state.iterations());
  // Times the benchmark threads blocked (futex waits: a lock or RocksDB's
  // write queue) or were preempted, per pair, over all threads.
  state.counters["blocked_per_pair"] =
      benchmark::Counter(static_cast<double>(after.ru_nvcsw - before.ru_nvcsw),
                         benchmark::Counter::kAvgIterations);
  state.counters["preempted_per_pair"] = benchmark::Counter(
      static_cast<double>(after.ru_nivcsw - before.ru_nivcsw),
      benchmark::Counter::kAvgIterations);
}
BENCHMARK(BM_ReserveSettleThreads)->ThreadRange(1, 4)->UseRealTime();

}  // namespace
}  // namespace bursar::storage

int main(int argc, char** argv) {
  if (int failed = bursar::bench::RunBenchmarks(argc, argv)) return failed;
  // Close the databases and delete their directories.
  for (bursar::storage::SyncMode sync :
       {bursar::storage::SyncMode::kNone, bursar::storage::SyncMode::kGroup}) {
    bursar::storage::LedgerFixture*& slot = bursar::storage::FixtureSlot(sync);
    delete slot;
    slot = nullptr;
  }
  return 0;
}
