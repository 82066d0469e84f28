#include "cli/decision_commands.h"

#include <cstdint>
#include <iostream>
#include <map>
#include <string>
#include <utility>

#include "absl/flags/flag.h"
#include "absl/status/statusor.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "bursar/v1/decision.grpc.pb.h"
#include "cli/arguments.h"
#include "cli/output.h"

ABSL_FLAG(std::string, model, "",
          "The model the call wants, as named in the policy's pricing "
          "catalog, e.g. gpt-4.1-mini.");
ABSL_FLAG(int64_t, input_tokens, 0,
          "check: prompt tokens the call will send. report: prompt tokens it "
          "used, cached ones included.");
ABSL_FLAG(int64_t, max_output_tokens, 0,
          "The most output tokens the call allows. Default (0): the policy's "
          "defaults.max_output_tokens.");
ABSL_FLAG(std::string, labels, "",
          "Attribution labels of the call, as key=value,key=value, e.g. "
          "team=search,user=alice.");
ABSL_FLAG(std::string, provider, "",
          "The provider the call will use, e.g. openai. Default: the one in "
          "the pricing catalog.");
ABSL_FLAG(std::string, request_id, "",
          "Makes check idempotent: a retry with the same id gets the same "
          "answer and reservation.");
ABSL_FLAG(std::string, priority, "",
          "Priority class for concurrency reserves, e.g. critical. Default: "
          "standard.");
ABSL_FLAG(bool, dry_run, false,
          "check: decide without reserving anything. policy push: compile "
          "on the server only; store and activate nothing.");
ABSL_FLAG(int64_t, cached_input_tokens, 0,
          "Part of --input_tokens served from the provider's prompt cache.");
ABSL_FLAG(int64_t, output_tokens, 0, "Output tokens the call used.");
ABSL_FLAG(std::string, outcome, "success",
          "How the call ended: success, failure, retry or cancelled.");
ABSL_FLAG(absl::Duration, latency, absl::ZeroDuration(),
          "Wall time of the call, e.g. 1.2s or 850ms. Default: not reported.");

namespace bursar::cli {
namespace {

int Check(const CommandContext& context,
          const std::vector<std::string>& /*args*/) {
  v1::CheckRequest request;
  request.set_model(absl::GetFlag(FLAGS_model));
  request.set_provider(absl::GetFlag(FLAGS_provider));
  request.set_request_id(absl::GetFlag(FLAGS_request_id));
  request.set_priority(absl::GetFlag(FLAGS_priority));
  request.set_input_tokens(absl::GetFlag(FLAGS_input_tokens));
  request.set_max_output_tokens(absl::GetFlag(FLAGS_max_output_tokens));
  request.set_dry_run(absl::GetFlag(FLAGS_dry_run));
  absl::StatusOr<std::map<std::string, std::string>> labels =
      ParseLabelList(absl::GetFlag(FLAGS_labels));
  if (!labels.ok()) {
    return UsageError(context.command,
                      absl::StrCat("--labels: ", labels.status().message()));
  }
  request.mutable_labels()->insert(labels->begin(), labels->end());

  v1::CheckResponse response;
  const grpc::Status status =
      v1::Decision::NewStub(context.channel)
          ->Check(NewCall(context).get(), request, &response);
  if (!status.ok()) return RpcError(context, status);
  if (context.json) return PrintJson(response);

  std::string reservation = response.reservation_id();
  if (reservation.empty()) {
    reservation = request.dry_run() ? "none (dry run)" : "none";
  } else if (!response.reservation_expires_at().empty()) {
    absl::StrAppend(&reservation, " (expires ",
                    response.reservation_expires_at(), ")");
  }
  std::vector<std::pair<std::string, std::string>> lines = {
      {"verdict", absl::AsciiStrToUpper(EnumWord(
                      "VERDICT_", v1::Verdict_Name(response.verdict())))},
      {"model", response.model()},
      {"max output tokens", absl::StrCat(response.max_output_tokens())},
      {"reservation", reservation},
      {"estimated cost", FormatUsd(response.estimated_cost_nanos())},
  };
  if (response.has_retry_after()) {
    const absl::Duration wait =
        absl::Seconds(response.retry_after().seconds()) +
        absl::Nanoseconds(response.retry_after().nanos());
    lines.push_back({"retry after", absl::FormatDuration(wait)});
  }
  lines.push_back({"policy version", OrDash(response.policy_version())});
  std::cout << RenderKeyValues(lines);

  if (!response.reasons().empty()) {
    Table reasons({"RULE", "REASON"});
    for (const v1::Reason& r : response.reasons()) {
      reasons.AddRow({r.rule(), r.message()});
    }
    std::cout << "\n" << reasons.Render();
  }
  if (!response.budgets().empty()) {
    Table budgets(
        {"BUDGET", "INSTANCE", "AMOUNT", "SPENT", "HELD", "REMAINING"});
    for (size_t c : {2, 3, 4, 5}) budgets.AlignRight(c);
    for (const v1::BudgetStanding& b : response.budgets()) {
      budgets.AddRow({b.budget(), OrDash(b.instance()),
                      FormatUsd(b.amount_nanos()), FormatUsd(b.spent_nanos()),
                      FormatUsd(b.held_nanos()),
                      FormatUsd(b.remaining_nanos())});
    }
    std::cout << "\n" << budgets.Render();
  }
  return kExitOk;
}

int Report(const CommandContext& context,
           const std::vector<std::string>& args) {
  v1::ReportRequest request;
  request.set_reservation_id(args[0]);
  v1::Usage* usage = request.mutable_usage();
  usage->set_input_tokens(absl::GetFlag(FLAGS_input_tokens));
  usage->set_cached_input_tokens(absl::GetFlag(FLAGS_cached_input_tokens));
  usage->set_output_tokens(absl::GetFlag(FLAGS_output_tokens));
  absl::StatusOr<v1::Outcome> outcome =
      ParseOutcome(absl::GetFlag(FLAGS_outcome));
  if (!outcome.ok()) {
    return UsageError(context.command,
                      absl::StrCat("--outcome: ", outcome.status().message()));
  }
  request.set_outcome(*outcome);
  const absl::Duration latency = absl::GetFlag(FLAGS_latency);
  if (latency < absl::ZeroDuration()) {
    return UsageError(context.command, "--latency: must not be negative");
  }
  if (latency > absl::ZeroDuration()) {
    const int64_t seconds = absl::ToInt64Seconds(latency);  // truncates
    request.mutable_latency()->set_seconds(seconds);
    request.mutable_latency()->set_nanos(static_cast<int32_t>(
        absl::ToInt64Nanoseconds(latency - absl::Seconds(seconds))));
  }

  v1::ReportResponse response;
  const grpc::Status status =
      v1::Decision::NewStub(context.channel)
          ->Report(NewCall(context).get(), request, &response);
  if (!status.ok()) return RpcError(context, status);
  if (context.json) return PrintJson(response);

  std::vector<std::pair<std::string, std::string>> lines = {
      {"cost", FormatUsd(response.cost_nanos())}};
  if (response.already_reported()) {
    lines.push_back({"note",
                     "already reported: nothing changed, the cost is "
                     "the one recorded then"});
  }
  if (response.reported_after_expiry()) {
    lines.push_back({"note",
                     "the reservation had expired and been charged "
                     "its estimate; corrected to this cost"});
  }
  std::cout << RenderKeyValues(lines);
  return kExitOk;
}

}  // namespace

std::vector<Command> DecisionCommands() {
  return {
      {.words = {"check"},
       .flags = {"model", "input_tokens", "max_output_tokens", "labels",
                 "provider", "request_id", "priority", "dry_run"},
       .required = {"model"},
       .synopsis = "--model M [--input_tokens N] [--max_output_tokens N] "
                   "[--labels k=v,...] [--provider P] [--request_id ID] "
                   "[--priority CLASS] [--dry_run]",
       .summary = "Ask whether a call may go ahead (reserves its worst case).",
       .details = "Prints the verdict, the model and output-token ceiling to "
                  "use, the reservation to pass to 'report', the estimated "
                  "worst-case cost, the reasons and every matching budget. A "
                  "DENY verdict is an answer, not an error: the exit status "
                  "is 0. Unless --dry_run, an ALLOW holds the estimate until "
                  "reported or expired.",
       .example = "bursarctl check --model gpt-4.1-mini --input_tokens 1200 "
                  "--max_output_tokens 800 --labels team=search,user=alice",
       .run = Check},
      {.words = {"report"},
       .args = {"RESERVATION_ID"},
       .flags = {"input_tokens", "cached_input_tokens", "output_tokens",
                 "outcome", "latency"},
       .required = {"input_tokens", "output_tokens"},
       .synopsis = "RESERVATION_ID --input_tokens N [--cached_input_tokens N] "
                   "--output_tokens N [--outcome "
                   "success|failure|retry|cancelled] [--latency 1.2s]",
       .summary = "Settle a reservation with the call's actual usage.",
       .details = "The hold is replaced by the actual cost. Reporting the "
                  "same reservation again changes nothing.",
       .example = "bursarctl report RESERVATION_ID --input_tokens 1200 "
                  "--output_tokens 350 --latency 1.2s",
       .run = Report},
  };
}

}  // namespace bursar::cli
