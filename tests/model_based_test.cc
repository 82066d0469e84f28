// Model-based randomized test: random sequences of budget changes, Checks,
// Reports, clock advances, policy pushes and restarts (clean and kill -9)
// run against a real bursard and against the reference model of
// tests/model/reference.h; every answer and every budget's figures must
// agree after every step. A difference fails with the seed and the
// shortest operation sequence found (delta debugging on fresh servers).
//
// Environment (docs/testing.md):
//   BURSAR_MODEL_SEED=N            run this seed (default: a fixed one)
//   BURSAR_MODEL_OPS=N             operations per run (default 2000)
//   BURSAR_MODEL_RUNS=N            seeds N, N+1, ... (default 1)
//   BURSAR_MODEL_SHRINK_SECONDS=S  time for shrinking (default 120)

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <tuple>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "google/protobuf/util/message_differencer.h"
#include "gtest/gtest.h"
#include "tests/bursard_process.h"
#include "tests/model/reference.h"

namespace bursar::testing {
namespace {

using ::google::protobuf::util::MessageDifferencer;
using model::Reference;

constexpr absl::Duration kTtl = absl::Minutes(10);
const char* const kBudgetNames[] = {"b0", "b1", "b2", "b3", "b4"};
const char* const kUsers[] = {"alice", "bob", "carol"};

int64_t EnvInt(const char* name, int64_t fallback) {
  const char* value = std::getenv(name);
  return value == nullptr || *value == '\0' ? fallback
                                            : std::strtoll(value, nullptr, 10);
}

// One step of a run. Reports name their reservation by position among the
// reservations issued so far (`pick`), so a sequence replays the same on a
// fresh server whatever ids it hands out.
struct Op {
  enum class Kind {
    kCheck,
    kReport,
    kSetBudget,
    kDeleteBudget,
    kAdvance,
    kPushPolicy,
    kRestart,
    kKill9,
    // Test of the test: SetBudget on bursard only.
    kServerOnlySetBudget
  };
  Kind kind = Kind::kCheck;
  v1::CheckRequest check;
  v1::ReportRequest report;  // reservation_id filled at run time
  uint32_t pick = 0;
  bool unknown_reservation = false;
  v1::Budget budget;
  std::string name;
  int64_t advance_seconds = 0;
  int variant = 0;

  std::string Describe() const {
    switch (kind) {
      case Kind::kCheck:
        return absl::StrCat("Check ", check.ShortDebugString());
      case Kind::kReport:
        return absl::StrCat(
            "Report ",
            unknown_reservation
                ? std::string("<unknown id>")
                : absl::StrCat("<reservation #pick ", pick, ">"),
            " ", report.ShortDebugString());
      case Kind::kSetBudget:
        return absl::StrCat("SetBudget ", budget.ShortDebugString());
      case Kind::kDeleteBudget:
        return absl::StrCat("DeleteBudget ", name);
      case Kind::kAdvance:
        return absl::StrCat("Advance clock ", advance_seconds, "s");
      case Kind::kPushPolicy:
        return absl::StrCat("PushPolicy variant ", variant);
      case Kind::kRestart:
        return "Restart (SIGTERM)";
      case Kind::kKill9:
        return "Restart (kill -9)";
      case Kind::kServerOnlySetBudget:
        return absl::StrCat("SetBudget on bursard only ",
                            budget.ShortDebugString());
    }
    return "?";
  }
};

class Generator {
 public:
  explicit Generator(uint64_t seed) : rng_(seed) {}

  std::vector<Op> Ops(int count, int variants) {
    std::vector<Op> ops;
    for (int i = 0; i < count; ++i) ops.push_back(Next(variants));
    return ops;
  }

 private:
  int Uniform(int lo, int hi) {  // [lo, hi]
    return std::uniform_int_distribution<int>(lo, hi)(rng_);
  }
  bool Chance(int percent) { return Uniform(1, 100) <= percent; }
  template <typename T, size_t N>
  const T& Pick(const T (&items)[N]) {
    return items[Uniform(0, N - 1)];
  }

  Op Next(int variants) {
    Op op;
    const int roll = Uniform(1, 100);
    if (roll <= 47) {
      op.kind = Op::Kind::kCheck;
      static const char* const kModels[] = {"big", "big",   "big",  "mid",
                                            "mid", "small", "small"};
      op.check.set_model(Chance(2) ? "unpriced" : Pick(kModels));
      op.check.set_input_tokens(Uniform(0, 5000));
      op.check.set_max_output_tokens(Chance(30) ? 0 : Uniform(1, 3000));
      if (Chance(50))
        op.check.set_request_id(absl::StrCat("q", Uniform(0, 80)));
      op.check.set_dry_run(Chance(8));
      auto& labels = *op.check.mutable_labels();
      if (Chance(70)) labels["team"] = Chance(60) ? "search" : "ads";
      if (Chance(70)) labels["user"] = Pick(kUsers);
      if (Chance(30)) labels["feature"] = "chat";
    } else if (roll <= 74) {
      op.kind = Op::Kind::kReport;
      op.pick = static_cast<uint32_t>(Uniform(0, 1 << 20));
      op.unknown_reservation = Chance(4);
      v1::Usage& usage = *op.report.mutable_usage();
      usage.set_input_tokens(Uniform(0, 5000));
      usage.set_cached_input_tokens(Chance(3)
                                        ? usage.input_tokens() + 1
                                        : Uniform(0, usage.input_tokens()));
      usage.set_output_tokens(Uniform(0, 3000));
      op.report.set_outcome(static_cast<v1::Outcome>(Uniform(1, 4)));
    } else if (roll <= 82) {
      op.kind = Op::Kind::kSetBudget;
      v1::Budget& b = op.budget;
      b.set_name(Pick(kBudgetNames));
      auto& selector = *b.mutable_selector();
      if (Chance(40)) selector["team"] = Chance(60) ? "search" : "ads";
      if (Chance(15)) selector["feature"] = "chat";
      if (Chance(12)) selector["model"] = "big";
      if (Chance(12)) selector["provider"] = Chance(50) ? "openai" : "acme";
      if (Chance(30)) b.set_per_label("user");
      static const v1::Period kPeriods[] = {v1::PERIOD_HOUR, v1::PERIOD_DAY,
                                            v1::PERIOD_WEEK, v1::PERIOD_MONTH,
                                            v1::PERIOD_NONE};
      b.set_period(Pick(kPeriods));
      static const char* const kZones[] = {"America/New_York", "Europe/Berlin",
                                           "Asia/Kolkata", "UTC"};
      b.set_timezone(Pick(kZones));
      static const int64_t kAmounts[] = {
          0,           5'000'000,   20'000'000,   50'000'000,
          100'000'000, 300'000'000, 1'000'000'000};
      b.set_amount_nanos(Pick(kAmounts) + Uniform(0, 999'999));
    } else if (roll <= 84) {
      op.kind = Op::Kind::kDeleteBudget;
      op.name = Pick(kBudgetNames);
    } else if (roll <= 94) {
      op.kind = Op::Kind::kAdvance;
      const int scale = Uniform(1, 100);
      op.advance_seconds = scale <= 40   ? Uniform(5, 9 * 60)
                           : scale <= 65 ? Uniform(10 * 60, 3600)
                           : scale <= 85 ? Uniform(3600, 20 * 3600)
                                         : Uniform(86400, 9 * 86400);
    } else if (roll <= 98) {
      op.kind = Op::Kind::kPushPolicy;
      op.variant = Uniform(0, variants - 1);
    } else {
      op.kind = Chance(50) ? Op::Kind::kRestart : Op::Kind::kKill9;
    }
    return op;
  }

  std::mt19937_64 rng_;
};

// Protos compared on the fields the model predicts: reasons by rule name
// (messages are prose), budgets in name order.
void Normalize(v1::CheckResponse& r) {
  std::vector<std::string> rules;
  for (const v1::Reason& reason : r.reasons()) rules.push_back(reason.rule());
  std::sort(rules.begin(), rules.end());
  r.clear_reasons();
  for (const std::string& rule : rules) r.add_reasons()->set_rule(rule);
  std::sort(r.mutable_budgets()->begin(), r.mutable_budgets()->end(),
            [](const v1::BudgetStanding& a, const v1::BudgetStanding& b) {
              return std::tie(a.budget(), a.instance()) <
                     std::tie(b.budget(), b.instance());
            });
  r.clear_retry_after();
}

std::optional<std::string> Differ(const google::protobuf::Message& expected,
                                  const google::protobuf::Message& actual) {
  MessageDifferencer differencer;
  std::string diff;
  differencer.ReportDifferencesToString(&diff);
  if (differencer.Compare(expected, actual)) return std::nullopt;
  return absl::StrCat(diff, "model:  ", expected.ShortDebugString(),
                      "\nbursard: ", actual.ShortDebugString());
}

// The fields of GetBudget the model predicts.
v1::GetBudgetResponse Comparable(const v1::GetBudgetResponse& in) {
  v1::GetBudgetResponse out;
  v1::Budget& b = *out.mutable_budget();
  b.set_name(in.budget().name());
  *b.mutable_selector() = in.budget().selector();
  b.set_per_label(in.budget().per_label());
  b.set_period(in.budget().period());
  b.set_timezone(in.budget().timezone());
  b.set_amount_nanos(in.budget().amount_nanos());
  out.set_spent_nanos(in.spent_nanos());
  out.set_held_nanos(in.held_nanos());
  for (const v1::BudgetInstanceStanding& row : in.instances()) {
    v1::BudgetInstanceStanding* r = out.add_instances();
    r->set_instance(row.instance());
    r->set_spent_nanos(row.spent_nanos());
    r->set_held_nanos(row.held_nanos());
    r->set_unreported_nanos(row.unreported_nanos());
    r->set_remaining_nanos(row.remaining_nanos());
  }
  return out;
}

// What a run exercised, so that a generator that stops reaching a case
// fails the test instead of passing vacuously.
struct Coverage {
  int allowed = 0;
  int denied = 0;
  int replays = 0;
  int dry_runs = 0;
  int downgrades = 0;
  int caps = 0;
  int reports = 0;
  int late_reports = 0;
  int repeated_reports = 0;
  int expired = 0;
  int restarts = 0;
  int pushes = 0;
  std::string Text() const {
    return absl::StrCat("allowed ", allowed, ", denied ", denied, ", replays ",
                        replays, ", dry runs ", dry_runs, ", downgrades ",
                        downgrades, ", caps ", caps, ", reports ", reports,
                        ", late reports ", late_reports, ", repeated reports ",
                        repeated_reports, ", expired ", expired, ", restarts ",
                        restarts, ", pushes ", pushes);
  }
};

struct Failure {
  size_t index = 0;  // of the op after which bursard and the model differ
  std::string message;
};

// One run of a sequence on a fresh bursard (its own data dir and clock).
class ModelRun {
 public:
  ModelRun() : variants_(model::TestPolicies()), model_(variants_, kTtl) {}

  std::optional<Failure> Execute(const std::vector<Op>& ops) {
    if (std::optional<std::string> error = Setup(); error.has_value()) {
      return Failure{0, absl::StrCat("setup: ", *error)};
    }
    for (size_t i = 0; i < ops.size(); ++i) {
      std::optional<std::string> error = Step(ops[i]);
      if (!error.has_value()) error = CompareBudgets();
      if (error.has_value()) return Failure{i, *error};
    }
    return std::nullopt;
  }

  const Coverage& coverage() const { return coverage_; }

  std::string ServerLogTail() const {
    const std::string log = server_ == nullptr ? "" : server_->Log();
    return log.size() > 3000 ? log.substr(log.size() - 3000) : log;
  }

 private:
  std::optional<std::string> Setup() {
    // 15:00 UTC on a Friday, two days before New York's DST change.
    clock_ = std::make_unique<ClockFile>(dir_.Sub("clock"),
                                         Utc(2026, 3, 6, 15, 0, 0));
    std::filesystem::create_directories(dir_.Sub("policy"));
    WriteFile(dir_.Sub("policy") + "/policy.yaml", variants_[0].Yaml());
    BursardOptions options;
    options.data_dir = dir_.Sub("data");
    options.policy_dir = dir_.Sub("policy");
    options.sync = "group";
    options.clock_file = clock_->path();
    options.extra_flags = {
        absl::StrCat("--reservation_ttl=", absl::FormatDuration(kTtl)),
        // Settled holds are never forgotten within a run, so replays and
        // late Reports always find them.
        "--settled_retention=100000h",
        // Expiry looks every 5 ms instead of every second.
        "--expiry_interval=5ms"};
    server_ = std::make_unique<BursardProcess>(options, dir_.path());
    if (::testing::AssertionResult started = server_->Start(); !started) {
      return started.message();
    }
    if (auto error = Push(0); error.has_value()) return error;
    // Every hold matches "org", so its held figure tells when bursard's
    // expiry (once a second) has caught up with the model.
    Op org;
    org.kind = Op::Kind::kSetBudget;
    org.budget =
        MakeBudget("org", {}, v1::PERIOD_NONE, 1'000'000'000'000'000, "UTC");
    return Step(org);
  }

  std::optional<std::string> Push(int variant) {
    v1::PushPolicyRequest request;
    v1::PolicyFile* file = request.add_files();
    file->set_path("policy.yaml");
    file->set_content(variants_[variant].Yaml());
    request.set_author("model-test");
    v1::PushPolicyResponse response;
    const grpc::Status status =
        server_->admin().PushPolicy(Call().get(), request, &response);
    if (!status.ok()) return absl::StrCat("PushPolicy: ", StatusText(status));
    model_.SetPolicy(variant, response.version());
    return std::nullopt;
  }

  std::optional<std::string> Code(const char* what, const grpc::Status& got,
                                  int want) {
    if (got.error_code() == want) return std::nullopt;
    return absl::StrCat(what, ": bursard answered ", StatusText(got),
                        "; the model expects code ", want);
  }

  std::optional<std::string> Step(const Op& op) {
    switch (op.kind) {
      case Op::Kind::kCheck: {
        v1::CheckResponse actual;
        const grpc::Status status = server_->Check(op.check, &actual);
        // A new reservation takes bursard's id; one it issued before
        // must not come back for a new hold.
        std::string issued = actual.reservation_id();
        if (model_.holds().count(issued) > 0) {
          issued = absl::StrCat("<a new id, not the earlier ", issued, ">");
        }
        v1::CheckResponse expected;
        const int want =
            model_.Check(op.check, clock_->now(), issued, &expected);
        if (auto e = Code("Check", status, want); e.has_value()) return e;
        if (want != 0) return std::nullopt;
        Normalize(expected);
        Normalize(actual);
        if (auto diff = Differ(expected, actual); diff.has_value()) {
          return absl::StrCat("Check answers differ: ", *diff);
        }
        (actual.verdict() == v1::VERDICT_ALLOW ? coverage_.allowed
                                               : coverage_.denied)++;
        if (op.check.dry_run()) ++coverage_.dry_runs;
        if (!issued.empty() && issued != actual.reservation_id()) {
          ++coverage_.replays;
        }
        for (const v1::Reason& reason : actual.reasons()) {
          if (reason.rule() == "on_exhausted:downgrade") ++coverage_.downgrades;
          if (reason.rule() == "on_exhausted:cap_to_fit") ++coverage_.caps;
        }
        return std::nullopt;
      }
      case Op::Kind::kReport: {
        v1::ReportRequest request = op.report;
        const std::vector<std::string>& issued = model_.issued();
        if (op.unknown_reservation || issued.empty()) {
          request.set_reservation_id("r-00000000000000000000000000000000");
        } else {
          request.set_reservation_id(issued[op.pick % issued.size()]);
        }
        v1::ReportResponse actual;
        const grpc::Status status = server_->Report(request, &actual);
        v1::ReportResponse expected;
        const int want = model_.Report(request, &expected);
        if (auto e = Code("Report", status, want); e.has_value()) return e;
        if (want != 0) return std::nullopt;
        if (auto diff = Differ(expected, actual); diff.has_value()) {
          return absl::StrCat("Report answers differ: ", *diff);
        }
        ++coverage_.reports;
        if (actual.already_reported()) {
          ++coverage_.repeated_reports;
        } else if (actual.reported_after_expiry()) {
          ++coverage_.late_reports;
        }
        return std::nullopt;
      }
      case Op::Kind::kSetBudget: {
        v1::SetBudgetRequest request;
        *request.mutable_budget() = op.budget;
        request.set_actor("model-test");
        request.set_reason("model-based test");
        v1::SetBudgetResponse response;
        const grpc::Status status = server_->SetBudget(request, &response);
        return Code("SetBudget", status, model_.SetBudget(op.budget));
      }
      case Op::Kind::kServerOnlySetBudget: {
        v1::SetBudgetRequest request;
        *request.mutable_budget() = op.budget;
        v1::SetBudgetResponse response;
        return Code("SetBudget", server_->SetBudget(request, &response), 0);
      }
      case Op::Kind::kDeleteBudget: {
        v1::DeleteBudgetRequest request;
        request.set_name(op.name);
        request.set_actor("model-test");
        request.set_reason("model-based test");
        v1::DeleteBudgetResponse response;
        const grpc::Status status =
            server_->admin().DeleteBudget(Call().get(), request, &response);
        return Code("DeleteBudget", status, model_.DeleteBudget(op.name));
      }
      case Op::Kind::kAdvance:
        clock_->Advance(absl::Seconds(op.advance_seconds));
        coverage_.expired += model_.Expire(clock_->now());
        return AwaitExpiry();
      case Op::Kind::kPushPolicy:
        ++coverage_.pushes;
        return Push(op.variant);
      case Op::Kind::kRestart: {
        ++coverage_.restarts;
        const int exit_code = server_->Terminate();
        if (exit_code != 0) {
          return absl::StrCat("SIGTERM: bursard exited with ", exit_code);
        }
        if (auto started = server_->Start(); !started) return started.message();
        return AwaitExpiry();
      }
      case Op::Kind::kKill9:
        ++coverage_.restarts;
        if (auto started = server_->CrashAndRestart(); !started) {
          return started.message();
        }
        return AwaitExpiry();
    }
    return "unknown op";
  }

  // bursard expires holds every --expiry_interval (wall clock); waits until its
  // "org" budget holds what the model's open holds add up to. Bounded, so
  // a hold that never expires fails the run instead of hanging it.
  std::optional<std::string> AwaitExpiry() {
    const int64_t want = model_.open_held_nanos();
    int64_t held = -1;
    for (int i = 0; i < 1000; ++i) {
      v1::GetBudgetRequest request;
      request.set_name("org");
      v1::GetBudgetResponse response;
      if (server_->GetBudget(request, &response).ok()) {
        held = response.held_nanos();
        if (held == want) return std::nullopt;
      }
      absl::SleepFor(absl::Milliseconds(10));
    }
    return absl::StrCat("expiry: after 10 s bursard's open holds add up to ",
                        held, " nanos; the model's to ", want);
  }

  std::optional<std::string> CompareBudgets() {
    std::vector<std::string> names(std::begin(kBudgetNames),
                                   std::end(kBudgetNames));
    names.push_back("org");
    for (const std::string& name : names) {
      std::vector<std::string> instances = {""};
      auto known = model_.budgets().find(name);
      if (known != model_.budgets().end() &&
          !known->second.per_label().empty()) {
        instances.assign(std::begin(kUsers), std::end(kUsers));
      }
      for (const std::string& instance : instances) {
        v1::GetBudgetRequest request;
        request.set_name(name);
        request.set_instance(instance);
        v1::GetBudgetResponse actual;
        const grpc::Status status = server_->GetBudget(request, &actual);
        const std::optional<v1::GetBudgetResponse> expected =
            model_.GetBudget(name, instance, clock_->now());
        if (auto e =
                Code(absl::StrCat("GetBudget ", name, "/", instance).c_str(),
                     status, expected.has_value() ? 0 : 5);
            e.has_value()) {
          return e;
        }
        if (!expected.has_value()) continue;
        if (auto diff = Differ(*expected, Comparable(actual));
            diff.has_value()) {
          return absl::StrCat("budget ", name, " instance \"", instance,
                              "\" differs: ", *diff);
        }
      }
    }
    return std::nullopt;
  }

  TempDir dir_;
  const std::vector<model::PolicyVariant> variants_;
  Reference model_;
  std::unique_ptr<ClockFile> clock_;
  std::unique_ptr<BursardProcess> server_;
  Coverage coverage_;
};

std::string Listing(const std::vector<Op>& ops) {
  std::string out;
  for (size_t i = 0; i < ops.size(); ++i) {
    absl::StrAppend(&out, "  ", i, ": ", ops[i].Describe(), "\n");
  }
  return out;
}

// Delta debugging (ddmin) over the op list: the smallest subsequence found
// within `budget` that still makes bursard and the model differ.
std::vector<Op> Shrink(std::vector<Op> ops, absl::Duration budget) {
  const absl::Time deadline = absl::Now() + budget;
  size_t chunks = 2;
  while (ops.size() >= 2 && absl::Now() < deadline) {
    const size_t size = (ops.size() + chunks - 1) / chunks;
    bool reduced = false;
    for (size_t start = 0; start < ops.size() && absl::Now() < deadline;
         start += size) {
      std::vector<Op> candidate(ops.begin(), ops.begin() + start);
      candidate.insert(candidate.end(),
                       ops.begin() + std::min(ops.size(), start + size),
                       ops.end());
      if (candidate.empty()) continue;
      ModelRun run;
      if (std::optional<Failure> f = run.Execute(candidate); f.has_value()) {
        candidate.resize(f->index + 1);
        ops = std::move(candidate);
        chunks = std::max<size_t>(chunks - 1, 2);
        reduced = true;
        break;
      }
    }
    if (!reduced) {
      if (chunks >= ops.size()) break;
      chunks = std::min(ops.size(), chunks * 2);
    }
  }
  return ops;
}

TEST(ModelBasedTest, BursardAgreesWithTheReferenceModel) {
  const uint64_t first_seed = EnvInt("BURSAR_MODEL_SEED", 20261122);
  const int count = static_cast<int>(EnvInt("BURSAR_MODEL_OPS", 2000));
  const int runs = static_cast<int>(EnvInt("BURSAR_MODEL_RUNS", 1));
  const absl::Duration shrink_budget =
      absl::Seconds(EnvInt("BURSAR_MODEL_SHRINK_SECONDS", 120));
  const int variants = static_cast<int>(model::TestPolicies().size());
  for (int r = 0; r < runs; ++r) {
    const uint64_t seed = first_seed + r;
    const std::vector<Op> ops = Generator(seed).Ops(count, variants);
    ModelRun run;
    const std::optional<Failure> failure = run.Execute(ops);
    if (!failure.has_value()) {
      const Coverage& c = run.coverage();
      std::cout << "seed " << seed << ", " << count << " ops: " << c.Text()
                << std::endl;
      // Every case the model knows was reached (the default run is long
      // enough for each; a shorter one may not be).
      if (count >= 1000) {
        EXPECT_GT(c.allowed, 0) << c.Text();
        EXPECT_GT(c.denied, 0) << c.Text();
        EXPECT_GT(c.replays, 0) << c.Text();
        EXPECT_GT(c.dry_runs, 0) << c.Text();
        EXPECT_GT(c.downgrades, 0) << c.Text();
        EXPECT_GT(c.caps, 0) << c.Text();
        EXPECT_GT(c.late_reports, 0) << c.Text();
        EXPECT_GT(c.repeated_reports, 0) << c.Text();
        EXPECT_GT(c.expired, 0) << c.Text();
        EXPECT_GT(c.restarts, 0) << c.Text();
        EXPECT_GT(c.pushes, 0) << c.Text();
      }
      continue;
    }
    const std::string log = run.ServerLogTail();
    std::vector<Op> failing(ops.begin(), ops.begin() + failure->index + 1);
    const std::vector<Op> shortest = Shrink(failing, shrink_budget);
    ModelRun replay;
    const std::optional<Failure> again = replay.Execute(shortest);
    FAIL() << "bursard and the model differ (BURSAR_MODEL_SEED=" << seed
           << " BURSAR_MODEL_OPS=" << count << ") at op " << failure->index
           << ": " << failure->message << "\n\nshortest sequence found ("
           << shortest.size() << " of " << failure->index + 1 << " ops):\n"
           << Listing(shortest) << "which fails with: "
           << (again.has_value() ? again->message : "(no longer fails)")
           << "\n\ntail of bursard's log:\n"
           << log;
  }
}

// The comparison is not vacuous and the shrinker works: a budget raised on
// bursard behind the model's back is caught, and shrinking keeps only what
// is needed to show it.
TEST(ModelBasedTest, CatchesAChangeBehindTheModelsBack) {
  std::vector<Op> ops = Generator(7).Ops(40, 1);
  Op sabotage;
  sabotage.kind = Op::Kind::kServerOnlySetBudget;
  sabotage.budget = MakeBudget("b0", {}, v1::PERIOD_DAY, 10'000'000, "UTC");
  ops.insert(ops.begin() + 20, sabotage);
  ModelRun run;
  const std::optional<Failure> failure = run.Execute(ops);
  ASSERT_TRUE(failure.has_value());
  EXPECT_EQ(failure->index, 20u) << failure->message;
  EXPECT_NE(failure->message.find("budget b0"), std::string::npos)
      << failure->message;
  std::vector<Op> failing(ops.begin(), ops.begin() + failure->index + 1);
  const std::vector<Op> shortest = Shrink(failing, absl::Seconds(60));
  ASSERT_EQ(shortest.size(), 1u) << Listing(shortest);
  EXPECT_EQ(shortest[0].kind, Op::Kind::kServerOnlySetBudget);
}

}  // namespace
}  // namespace bursar::testing
