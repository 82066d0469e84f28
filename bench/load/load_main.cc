// bursar-load: open-loop load for bursard (or bursar-echo) over gRPC.
//
//   bursar-load --target=127.0.0.1:PORT --rate=5000 --duration=5s
//   bursar-load --target=... --find_saturation
//
// Prints, per run, the achieved rate, errors by code and p50/p90/p99/p99.9/
// max latency (from the intended send time) for Check, Report and all calls,
// then one `RESULT key=value ...` line for scripts (medians over
// --repeats runs).

#include <sys/prctl.h>

#include <algorithm>
#include <cstdio>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/time/time.h"
#include "bench/load/load_generator.h"
#include "bench/load/saturation.h"
#include "bursar/v1/admin.grpc.pb.h"
#include "grpcpp/grpcpp.h"

ABSL_FLAG(std::string, target, "", "host:port of bursard or bursar-echo.");
ABSL_FLAG(double, rate, 1000,
          "Checks per second to start (intended send rate). With --mix=m, "
          "m × rate Reports per second follow. With --find_saturation: the "
          "first rate of the ramp.");
ABSL_FLAG(absl::Duration, duration, absl::Seconds(5),
          "Measured time of each run.");
ABSL_FLAG(absl::Duration, warmup, absl::Seconds(1),
          "Load before each measured run that is not recorded.");
ABSL_FLAG(int, connections, 4,
          "Channels, each its own HTTP/2 connection; calls go round-robin.");
ABSL_FLAG(double, mix, 1.0,
          "Fraction (0..1) of allowed Checks followed by a Report of their "
          "reservation.");
ABSL_FLAG(int, labels_cardinality, 1000,
          "Distinct users (label \"user\"); teams are users spread over "
          "--teams values.");
ABSL_FLAG(int, teams, 10, "Distinct teams (label \"team\").");
ABSL_FLAG(std::string, model, "gpt-4.1-mini",
          "Model of every Check (priced by policies/example).");
ABSL_FLAG(bool, request_ids, true,
          "Give every Check a unique request_id, as an idempotent gateway "
          "does.");
ABSL_FLAG(int, max_in_flight, 20000,
          "The scheduler waits while this many calls are unanswered (the "
          "wait counts in latency).");
ABSL_FLAG(absl::Duration, deadline, absl::Seconds(10), "Per-call deadline.");
ABSL_FLAG(bool, setup_budgets, true,
          "Before the load, create (or replace) an org budget, a per-team "
          "budget and a per-user budget through Admin.SetBudget so every "
          "Check matches three budget instances and none ever denies. Off "
          "for bursar-echo, which has no Admin service.");
ABSL_FLAG(int, repeats, 1,
          "Measured runs per point; the RESULT line has their medians.");
ABSL_FLAG(bool, find_saturation, false,
          "Ramp the rate from --rate (×--ramp_factor per step) until a step "
          "is not sustained, refine between the last sustained and the first "
          "unsustained rate, then measure the last sustained rate "
          "--repeats times; unless most of those runs are sustained, step "
          "down by half a ramp step and measure again "
          "(bench/load/saturation.h).");
ABSL_FLAG(double, ramp_factor, 1.5, "Rate multiplier per ramp step.");
ABSL_FLAG(int, refine_steps, 3, "Bisection steps (geometric) after the ramp.");
ABSL_FLAG(absl::Duration, sustained_p99, absl::Milliseconds(50),
          "A step is sustained when achieved Checks/s ≥ 95% of intended, no "
          "Check went unsent, errors ≤ 0.1% and Check p99 is within this.");
ABSL_FLAG(bool, show_answer, false,
          "Before the load, print one Check answer and its size (to compare "
          "bursar-echo's fixed answer with bursard's).");
ABSL_FLAG(std::string, label, "",
          "Name of the server under test, echoed in the RESULT line.");

namespace bursar::load {
namespace {

constexpr int64_t kOrgNanos = 100'000'000'000'000'000;  // $100M a month
constexpr int64_t kTeamNanos = 10'000'000'000'000'000;  // $10M a day per team
constexpr int64_t kUserNanos = 1'000'000'000'000'000;   // $1M a day per user

bool SetUpBudgets(const std::string& target) {
  auto channel =
      grpc::CreateChannel(target, grpc::InsecureChannelCredentials());
  auto admin = v1::Admin::NewStub(channel);
  struct Spec {
    const char* name;
    std::vector<std::pair<std::string, std::string>> selector;
    const char* per_label;
    v1::Period period;
    int64_t amount_nanos;
  };
  const Spec specs[] = {
      {"bench-org", {}, "", v1::PERIOD_MONTH, kOrgNanos},
      {"bench-team", {{"env", "prod"}}, "team", v1::PERIOD_DAY, kTeamNanos},
      {"bench-user", {{"app", "bench"}}, "user", v1::PERIOD_DAY, kUserNanos},
  };
  for (const Spec& spec : specs) {
    v1::SetBudgetRequest request;
    v1::Budget* budget = request.mutable_budget();
    budget->set_name(spec.name);
    for (const auto& [key, value] : spec.selector) {
      (*budget->mutable_selector())[key] = value;
    }
    budget->set_per_label(spec.per_label);
    budget->set_period(spec.period);
    budget->set_timezone("UTC");
    budget->set_amount_nanos(spec.amount_nanos);
    request.set_actor("bursar-load");
    request.set_reason("load test budgets: large enough never to deny");
    v1::SetBudgetResponse response;
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() +
                         std::chrono::seconds(10));
    context.set_wait_for_ready(true);
    const grpc::Status status = admin->SetBudget(&context, request, &response);
    if (!status.ok()) {
      std::fprintf(stderr, "bursar-load: SetBudget %s: %s: %s\n", spec.name,
                   StatusCodeName(status.error_code()).c_str(),
                   status.error_message().c_str());
      return false;
    }
  }
  return true;
}

double Micros(int64_t nanos) { return nanos / 1000.0; }

std::string Errors(const CallStats& stats) {
  if (stats.errors_by_code.empty()) return "none";
  std::vector<std::string> parts;
  for (const auto& [code, count] : stats.errors_by_code) {
    parts.push_back(absl::StrCat(StatusCodeName(code), "=", count));
  }
  return absl::StrJoin(parts, ",");
}

void PrintLatencyRow(const char* name, const CallStats& stats) {
  const Histogram& h = stats.latency_nanos;
  std::printf("  %-7s %9lld %9.0f %9.0f %9.0f %9.0f %9.0f  %s\n", name,
              static_cast<long long>(h.count()),
              Micros(h.ValueAtPercentile(50)), Micros(h.ValueAtPercentile(90)),
              Micros(h.ValueAtPercentile(99)),
              Micros(h.ValueAtPercentile(99.9)), Micros(h.max()),
              Errors(stats).c_str());
}

void PrintRun(const std::string& title, const RunResult& r) {
  std::printf("%s: intended %.0f Checks/s for %s\n", title.c_str(),
              r.intended_check_rate, absl::FormatDuration(r.measured).c_str());
  std::printf(
      "  achieved %.0f Checks/s + %.0f Reports/s = %.0f calls/s over %s; "
      "unsent %lld; unfinished %lld; max send lag %.0f us\n",
      r.achieved_check_rate, r.achieved_report_rate, r.achieved_call_rate(),
      absl::FormatDuration(r.elapsed).c_str(), static_cast<long long>(r.unsent),
      static_cast<long long>(r.unfinished),
      absl::ToDoubleMicroseconds(r.max_send_lag));
  std::printf("  %-7s %9s %9s %9s %9s %9s %9s  %s\n", "us", "count", "p50",
              "p90", "p99", "p99.9", "max", "errors");
  PrintLatencyRow("Check", r.check);
  PrintLatencyRow("Report", r.report);
  PrintLatencyRow("all", r.overall);
  std::printf(
      "  mean answer bytes: Check %.0f, Report %.0f\n",
      r.check.ok ? static_cast<double>(r.check.response_bytes) / r.check.ok
                 : 0.0,
      r.report.ok ? static_cast<double>(r.report.response_bytes) / r.report.ok
                  : 0.0);
  std::fflush(stdout);
}

// Why a run does not count as sustained; empty when it does.
std::string NotSustained(const RunResult& r, absl::Duration max_p99) {
  if (r.achieved_check_rate < 0.95 * r.intended_check_rate) {
    return absl::StrFormat("achieved %.0f < 95%% of %.0f Checks/s",
                           r.achieved_check_rate, r.intended_check_rate);
  }
  if (r.unsent > 0) return absl::StrCat(r.unsent, " Checks unsent");
  if (r.unfinished > 0) return absl::StrCat(r.unfinished, " calls unanswered");
  const int64_t calls = r.overall.latency_nanos.count();
  if (r.overall.errors() * 1000 > calls) {
    return absl::StrCat("errors: ", Errors(r.overall));
  }
  const int64_t p99 = r.check.latency_nanos.ValueAtPercentile(99);
  if (p99 > absl::ToInt64Nanoseconds(max_p99)) {
    return absl::StrFormat("Check p99 %.1f ms", p99 / 1e6);
  }
  return "";
}

double Median(std::vector<double> values) {
  if (values.empty()) return 0;
  std::sort(values.begin(), values.end());
  const size_t n = values.size();
  return n % 2 == 1 ? values[n / 2] : (values[n / 2 - 1] + values[n / 2]) / 2;
}

// Medians over runs of the figures scripts read.
std::string ResultFields(const std::vector<RunResult>& runs) {
  auto median_of = [&](auto get) {
    std::vector<double> v;
    for (const RunResult& r : runs) v.push_back(get(r));
    return Median(v);
  };
  auto pct = [](const CallStats& s, double p) {
    return Micros(s.latency_nanos.ValueAtPercentile(p));
  };
  int64_t errors = 0;
  int64_t unsent = 0;
  for (const RunResult& r : runs) {
    errors += r.overall.errors();
    unsent += r.unsent;
  }
  return absl::StrFormat(
      "runs=%d check_rate=%.0f calls_per_s=%.0f checks_per_s=%.0f "
      "check_p50_us=%.0f check_p90_us=%.0f check_p99_us=%.0f "
      "check_p999_us=%.0f check_max_us=%.0f report_p99_us=%.0f "
      "all_p99_us=%.0f errors=%d unsent=%d check_bytes=%.0f",
      runs.size(),
      median_of([](const RunResult& r) { return r.intended_check_rate; }),
      median_of([](const RunResult& r) { return r.achieved_call_rate(); }),
      median_of([](const RunResult& r) { return r.achieved_check_rate; }),
      median_of([&](const RunResult& r) { return pct(r.check, 50); }),
      median_of([&](const RunResult& r) { return pct(r.check, 90); }),
      median_of([&](const RunResult& r) { return pct(r.check, 99); }),
      median_of([&](const RunResult& r) { return pct(r.check, 99.9); }),
      median_of([&](const RunResult& r) {
        return Micros(r.check.latency_nanos.max());
      }),
      median_of([&](const RunResult& r) { return pct(r.report, 99); }),
      median_of([&](const RunResult& r) { return pct(r.overall, 99); }), errors,
      unsent, median_of([](const RunResult& r) {
        return r.check.ok
                   ? static_cast<double>(r.check.response_bytes) / r.check.ok
                   : 0.0;
      }));
}

int Main() {
  // Sleep precisely: the scheduler's wake-ups are its send times.
  prctl(PR_SET_TIMERSLACK, 1UL, 0, 0, 0);

  LoadOptions options;
  options.target = absl::GetFlag(FLAGS_target);
  if (options.target.empty()) {
    std::fprintf(stderr, "bursar-load: --target is required\n");
    return 2;
  }
  options.connections = absl::GetFlag(FLAGS_connections);
  options.report_mix = std::clamp(absl::GetFlag(FLAGS_mix), 0.0, 1.0);
  options.users = absl::GetFlag(FLAGS_labels_cardinality);
  options.teams = absl::GetFlag(FLAGS_teams);
  options.model = absl::GetFlag(FLAGS_model);
  options.request_ids = absl::GetFlag(FLAGS_request_ids);
  options.max_in_flight = absl::GetFlag(FLAGS_max_in_flight);
  options.deadline = absl::GetFlag(FLAGS_deadline);
  const double rate = absl::GetFlag(FLAGS_rate);
  const absl::Duration duration = absl::GetFlag(FLAGS_duration);
  const absl::Duration warmup = absl::GetFlag(FLAGS_warmup);
  const int repeats = std::max(1, absl::GetFlag(FLAGS_repeats));
  const absl::Duration max_p99 = absl::GetFlag(FLAGS_sustained_p99);
  const std::string label = absl::GetFlag(FLAGS_label);
  if (rate <= 0 || duration <= absl::ZeroDuration()) {
    std::fprintf(stderr, "bursar-load: --rate and --duration must be > 0\n");
    return 2;
  }

  if (absl::GetFlag(FLAGS_setup_budgets) && !SetUpBudgets(options.target)) {
    return 1;
  }
  LoadGenerator generator(options);
  if (!generator.Connect(absl::Seconds(10))) {
    std::fprintf(stderr, "bursar-load: cannot connect to %s\n",
                 options.target.c_str());
    return 1;
  }
  if (absl::GetFlag(FLAGS_show_answer)) {
    v1::CheckResponse answer;
    const grpc::Status status = generator.CheckOnce(&answer);
    std::printf("one Check: %s, %zu bytes: %s\n",
                StatusCodeName(status.error_code()).c_str(),
                answer.ByteSizeLong(), answer.ShortDebugString().c_str());
  }
  std::printf(
      "bursar-load → %s%s: %d connections, mix %.2f, %d users / %d teams, "
      "request ids %s\n",
      options.target.c_str(), label.empty() ? "" : (" (" + label + ")").c_str(),
      options.connections, options.report_mix, options.users, options.teams,
      options.request_ids ? "on" : "off");

  if (!absl::GetFlag(FLAGS_find_saturation)) {
    std::vector<RunResult> runs;
    for (int i = 0; i < repeats; ++i) {
      runs.push_back(generator.Run(rate, warmup, duration));
      PrintRun(absl::StrFormat("run %d/%d", i + 1, repeats), runs.back());
    }
    std::printf("RESULT label=%s mode=fixed %s calls_started=%lld\n",
                label.empty() ? "-" : label.c_str(), ResultFields(runs).c_str(),
                static_cast<long long>(generator.calls_started()));
    return 0;
  }

  // Every run, in the order FindSaturation ran them.
  std::vector<RunResult> runs;
  const SaturationResult found = FindSaturation(
      SaturationOptions{
          .start_rate = rate,
          .ramp_factor = absl::GetFlag(FLAGS_ramp_factor),
          .refine_steps = absl::GetFlag(FLAGS_refine_steps),
          .repeats = repeats,
      },
      [&](double r, absl::string_view run_label) {
        runs.push_back(generator.Run(r, warmup, duration));
        const std::string why = NotSustained(runs.back(), max_p99);
        PrintRun(std::string(run_label), runs.back());
        std::printf("  → %s\n", why.empty() ? "sustained" : why.c_str());
        return why.empty();
      });
  if (found.rate == 0) {
    std::printf("RESULT label=%s mode=saturation failed=1\n",
                label.empty() ? "-" : label.c_str());
    return 1;
  }
  std::vector<RunResult> repeat_runs;
  for (int i : found.repeat_runs) repeat_runs.push_back(runs[i]);
  const double good = found.rate;
  const double bad = found.next_tried;
  const int sustained_runs = found.sustained_repeats;
  std::printf(
      "saturation: %.0f Checks/s sustained (next tried: %.0f); %d of %d "
      "repeat runs sustained\n",
      good, bad, sustained_runs, repeats);
  std::printf(
      "RESULT label=%s mode=saturation sustained_runs=%d %s "
      "calls_started=%lld\n",
      label.empty() ? "-" : label.c_str(), sustained_runs,
      ResultFields(repeat_runs).c_str(),
      static_cast<long long>(generator.calls_started()));
  return 0;
}

}  // namespace
}  // namespace bursar::load

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "Open-loop gRPC load for bursard: bursar-load --target=HOST:PORT "
      "[--rate=N] [--duration=5s] [--connections=4] [--mix=1] "
      "[--labels_cardinality=1000] [--find_saturation]");
  absl::ParseCommandLine(argc, argv);
  return bursar::load::Main();
}
