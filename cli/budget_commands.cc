#include "cli/budget_commands.h"

#include <algorithm>
#include <cstdint>
#include <iostream>
#include <map>
#include <utility>

#include "absl/flags/flag.h"
#include "absl/status/statusor.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "bursar/v1/admin.grpc.pb.h"
#include "cli/arguments.h"
#include "cli/output.h"
#include "cli/policy_output.h"
#include "google/protobuf/util/json_util.h"
#include "policy/money.h"

ABSL_FLAG(std::string, amount, "",
          "Amount per period (and per instance of a --per_label budget) in "
          "USD, as an exact decimal: 5000, 12.50, 0.0000015. No exponents or "
          "thousands separators.");
ABSL_FLAG(std::string, period, "",
          "When the amount resets: hour, day, week (from Monday), month (from "
          "the 1st) or none (never).");
ABSL_FLAG(std::string, timezone, "",
          "IANA time zone in which periods start, e.g. America/New_York. "
          "Default: UTC.");
ABSL_FLAG(std::string, selector, "",
          "Labels a request must carry for the budget to apply, as "
          "key=value,key=value. Default: every request.");
ABSL_FLAG(std::string, per_label, "",
          "Label key whose every distinct value gets its own instance of the "
          "budget, e.g. user. Requests without that label are not counted.");
ABSL_FLAG(std::string, thresholds, "",
          "Alert thresholds as fractions of the amount, e.g. 0.5,0.85,1. "
          "Default: 0.85,1.");
ABSL_FLAG(std::string, reason, "", "Why: recorded in the audit log.");
ABSL_FLAG(std::string, instance, "",
          "For a --per_label budget: the one instance (label value) to show. "
          "Default: every instance with spend or holds this period.");
ABSL_FLAG(int32_t, limit, 100,
          "audit: at most this many records; policy shadow: at most this "
          "many samples; newest first.");

namespace bursar::cli {
namespace {

std::string PeriodWord(v1::Period period) {
  return EnumWord("PERIOD_", v1::Period_Name(period));
}

std::vector<std::pair<std::string, std::string>> BudgetLines(
    const v1::Budget& budget) {
  std::vector<std::pair<std::string, std::string>> lines = {
      {"amount", DescribeAmount(budget)},
      {"applies to", budget.selector().empty()
                         ? "every request"
                         : FormatLabels(budget.selector())},
  };
  if (!budget.per_label().empty()) {
    lines.push_back({"per label", budget.per_label()});
  }
  lines.push_back(
      {"timezone", budget.timezone().empty() ? "UTC" : budget.timezone()});
  lines.push_back({"alerts at", FormatThresholds(budget.alert_thresholds())});
  lines.push_back({"updated", absl::StrCat(budget.updated_at(), " by ",
                                           OrDash(budget.updated_by()))});
  return lines;
}

int BudgetSet(const CommandContext& context,
              const std::vector<std::string>& args) {
  v1::SetBudgetRequest request;
  v1::Budget* budget = request.mutable_budget();
  budget->set_name(args[0]);

  absl::StatusOr<int64_t> amount =
      policy::ParseUsdNanos(absl::GetFlag(FLAGS_amount));
  if (!amount.ok()) {
    return UsageError(context.command,
                      absl::StrCat("--amount: ", amount.status().message()));
  }
  budget->set_amount_nanos(*amount);

  absl::StatusOr<v1::Period> period = ParsePeriod(absl::GetFlag(FLAGS_period));
  if (!period.ok()) {
    return UsageError(context.command,
                      absl::StrCat("--period: ", period.status().message()));
  }
  budget->set_period(*period);

  absl::StatusOr<std::map<std::string, std::string>> selector =
      ParseLabelList(absl::GetFlag(FLAGS_selector));
  if (!selector.ok()) {
    return UsageError(
        context.command,
        absl::StrCat("--selector: ", selector.status().message()));
  }
  budget->mutable_selector()->insert(selector->begin(), selector->end());

  absl::StatusOr<std::vector<double>> thresholds =
      ParseThresholdList(absl::GetFlag(FLAGS_thresholds));
  if (!thresholds.ok()) {
    return UsageError(
        context.command,
        absl::StrCat("--thresholds: ", thresholds.status().message()));
  }
  budget->mutable_alert_thresholds()->Add(thresholds->begin(),
                                          thresholds->end());

  budget->set_timezone(absl::GetFlag(FLAGS_timezone));
  budget->set_per_label(absl::GetFlag(FLAGS_per_label));
  request.set_actor(context.actor);
  request.set_reason(absl::GetFlag(FLAGS_reason));

  v1::SetBudgetResponse response;
  const grpc::Status status =
      AdminStub(context)->SetBudget(NewCall(context).get(), request, &response);
  if (!status.ok()) return RpcError(context, status);
  if (context.json) return PrintJson(response);

  std::cout << (response.created() ? "Created" : "Replaced") << " budget "
            << response.budget().name() << "\n"
            << RenderKeyValues(BudgetLines(response.budget()), 2);
  return kExitOk;
}

// The instances of one budget: spent, held and remaining in the current
// period.
std::string StandingTable(const v1::GetBudgetResponse& response) {
  const bool per_label = !response.budget().per_label().empty();
  const bool any_unreported =
      std::any_of(response.instances().begin(), response.instances().end(),
                  [](const v1::BudgetInstanceStanding& s) {
                    return s.unreported_nanos() > 0;
                  });
  std::vector<std::string> headers;
  if (per_label) {
    headers.push_back(absl::AsciiStrToUpper(response.budget().per_label()));
  }
  for (const char* h : {"SPENT", "HELD", "REMAINING"}) headers.push_back(h);
  if (any_unreported) headers.push_back("UNREPORTED");
  Table table(headers);
  for (size_t c = per_label ? 1 : 0; c < headers.size(); ++c) {
    table.AlignRight(c);
  }
  for (const v1::BudgetInstanceStanding& s : response.instances()) {
    std::vector<std::string> row;
    if (per_label) row.push_back(s.instance());
    row.push_back(FormatUsd(s.spent_nanos()));
    row.push_back(FormatUsd(s.held_nanos()));
    row.push_back(FormatUsd(s.remaining_nanos()));
    if (any_unreported) row.push_back(FormatUsd(s.unreported_nanos()));
    table.AddRow(std::move(row));
  }
  if (per_label && response.instances_size() > 1) {
    table.AddRow({"(total)", FormatUsd(response.spent_nanos()),
                  FormatUsd(response.held_nanos())});
  }
  return table.Render();
}

int BudgetGet(const CommandContext& context,
              const std::vector<std::string>& args) {
  v1::GetBudgetRequest request;
  request.set_name(args[0]);
  request.set_instance(absl::GetFlag(FLAGS_instance));
  v1::GetBudgetResponse response;
  const grpc::Status status =
      AdminStub(context)->GetBudget(NewCall(context).get(), request, &response);
  if (!status.ok()) return RpcError(context, status);
  if (context.json) return PrintJson(response);

  std::vector<std::pair<std::string, std::string>> lines =
      BudgetLines(response.budget());
  if (!response.instances().empty() &&
      !response.instances(0).period_start().empty()) {
    lines.push_back({"this period",
                     absl::StrCat(response.instances(0).period_start(), " to ",
                                  response.instances(0).period_end())});
  }
  std::cout << "Budget " << response.budget().name() << "\n"
            << RenderKeyValues(lines, 2) << "\n";
  if (response.instances().empty()) {
    std::cout << "No spend or holds in the current period.\n";
  } else {
    std::cout << StandingTable(response);
  }
  return kExitOk;
}

int BudgetList(const CommandContext& context,
               const std::vector<std::string>& /*args*/) {
  // Every page, as one answer.
  v1::ListBudgetsResponse response;
  v1::ListBudgetsRequest request;
  do {
    v1::ListBudgetsResponse page;
    const grpc::Status status =
        AdminStub(context)->ListBudgets(NewCall(context).get(), request, &page);
    if (!status.ok()) return RpcError(context, status);
    for (v1::GetBudgetResponse& budget : *page.mutable_budgets()) {
      *response.add_budgets() = std::move(budget);
    }
    request.set_page_token(page.next_page_token());
  } while (!request.page_token().empty());
  if (context.json) return PrintJson(response);

  if (response.budgets().empty()) {
    std::cout << "No budgets. Create one with 'bursarctl budget set'.\n";
    return kExitOk;
  }
  Table table({"NAME", "AMOUNT", "PERIOD", "SELECTOR", "PER LABEL", "SPENT",
               "HELD", "REMAINING"});
  for (size_t c : {1, 5, 6, 7}) table.AlignRight(c);
  for (const v1::GetBudgetResponse& b : response.budgets()) {
    const v1::Budget& budget = b.budget();
    // A budget without per_label has one instance (absent while nothing is
    // spent or held); remaining over many instances means nothing.
    std::string remaining = "-";
    if (budget.per_label().empty()) {
      remaining =
          FormatUsd(b.instances().empty() ? budget.amount_nanos()
                                          : b.instances(0).remaining_nanos());
    }
    table.AddRow({budget.name(), FormatUsd(budget.amount_nanos()),
                  PeriodWord(budget.period()),
                  OrDash(FormatLabels(budget.selector())),
                  OrDash(budget.per_label()), FormatUsd(b.spent_nanos()),
                  FormatUsd(b.held_nanos()), remaining});
  }
  std::cout << table.Render();
  return kExitOk;
}

int BudgetDelete(const CommandContext& context,
                 const std::vector<std::string>& args) {
  v1::DeleteBudgetRequest request;
  request.set_name(args[0]);
  request.set_actor(context.actor);
  request.set_reason(absl::GetFlag(FLAGS_reason));
  v1::DeleteBudgetResponse response;
  const grpc::Status status = AdminStub(context)->DeleteBudget(
      NewCall(context).get(), request, &response);
  if (!status.ok()) return RpcError(context, status);
  if (context.json) return PrintJson(response);
  std::cout << "Deleted budget " << args[0]
            << " (its recorded spend stays in the ledger)\n";
  return kExitOk;
}

int Audit(const CommandContext& context,
          const std::vector<std::string>& /*args*/) {
  v1::ListAuditRequest request;
  const int32_t limit = absl::GetFlag(FLAGS_limit);
  if (limit <= 0) {
    return UsageError(context.command,
                      "--limit: must be at least 1, e.g. --limit=20");
  }
  request.set_limit(limit);
  v1::ListAuditResponse response;
  const grpc::Status status =
      AdminStub(context)->ListAudit(NewCall(context).get(), request, &response);
  if (!status.ok()) return RpcError(context, status);
  if (context.json) return PrintJson(response);

  if (response.records().empty()) {
    std::cout << "No admin changes recorded.\n";
    return kExitOk;
  }
  // The change is the longest column: last.
  Table table(
      {"TIME", "ACTOR", "ROLE", "ACTION", "TARGET", "REASON", "CHANGE"});
  for (const v1::AuditRecord& r : response.records()) {
    const std::string change =
        absl::StartsWith(r.action(), "policy.")
            ? DescribePolicyChange(r.before_json(), r.after_json())
            : DescribeBudgetChange(r.before_json(), r.after_json());
    table.AddRow({r.time(), OrDash(r.actor()), OrDash(r.role()), r.action(),
                  r.target(), OrDash(r.reason()), OrDash(change)});
  }
  std::cout << table.Render();
  return kExitOk;
}

}  // namespace

std::string DescribeAmount(const v1::Budget& budget) {
  std::string text = FormatUsd(budget.amount_nanos());
  if (budget.period() == v1::PERIOD_NONE) {
    absl::StrAppend(&text, " in total (never resets)");
  } else {
    absl::StrAppend(&text, " per ", PeriodWord(budget.period()));
  }
  if (!budget.per_label().empty()) {
    absl::StrAppend(&text, " for each ", budget.per_label());
  }
  return text;
}

std::string DescribeBudgetChange(absl::string_view before_json,
                                 absl::string_view after_json) {
  v1::Budget before;
  v1::Budget after;
  if (!before_json.empty() && !google::protobuf::util::JsonStringToMessage(
                                   std::string(before_json), &before)
                                   .ok()) {
    return "";
  }
  if (!after_json.empty() && !google::protobuf::util::JsonStringToMessage(
                                  std::string(after_json), &after)
                                  .ok()) {
    return "";
  }
  if (before_json.empty() && after_json.empty()) return "";
  if (after_json.empty()) return "deleted";
  if (before_json.empty()) {
    std::string text = absl::StrCat("created: ", DescribeAmount(after));
    if (!after.selector().empty()) {
      absl::StrAppend(&text, ", ", FormatLabels(after.selector()));
    }
    return text;
  }
  std::vector<std::string> changes;
  auto changed = [&](absl::string_view what, const std::string& from,
                     const std::string& to) {
    if (from != to) {
      changes.push_back(
          absl::StrCat(what, " ", OrDash(from), " -> ", OrDash(to)));
    }
  };
  changed("amount", FormatUsd(before.amount_nanos()),
          FormatUsd(after.amount_nanos()));
  changed("period", PeriodWord(before.period()), PeriodWord(after.period()));
  changed("selector", FormatLabels(before.selector()),
          FormatLabels(after.selector()));
  changed("per_label", before.per_label(), after.per_label());
  changed("timezone", before.timezone(), after.timezone());
  changed("alerts", FormatThresholds(before.alert_thresholds()),
          FormatThresholds(after.alert_thresholds()));
  if (changes.empty()) return "no change";
  return absl::StrJoin(changes, "; ");
}

std::vector<Command> BudgetCommands() {
  return {
      {.words = {"budget", "set"},
       .args = {"NAME"},
       .flags = {"amount", "period", "timezone", "selector", "per_label",
                 "thresholds", "reason"},
       .required = {"amount", "period"},
       .synopsis = "NAME --amount USD --period hour|day|week|month|none "
                   "[--timezone TZ] [--selector k=v,...] [--per_label KEY] "
                   "[--thresholds 0.5,0.85,1] [--reason TEXT]",
       .summary = "Create or replace a budget.",
       .details = "Replaces the whole budget: flags left out take their "
                  "defaults. Spend already recorded is kept, and a new amount "
                  "applies at once to the current period. The change is "
                  "audited with --actor and --reason.",
       .example = "bursarctl budget set team-search --amount 5000 --period "
                  "month --selector team=search",
       .run = BudgetSet},
      {.words = {"budget", "get"},
       .args = {"NAME"},
       .flags = {"instance"},
       .synopsis = "NAME [--instance VALUE]",
       .summary = "Show a budget and its spend in the current period.",
       .details = "Shows spent (settled calls), held (open reservations) and "
                  "remaining per instance; a --per_label budget has one "
                  "instance per label value.",
       .example = "bursarctl budget get team-search",
       .run = BudgetGet},
      {.words = {"budget", "list"},
       .synopsis = "",
       .summary = "List every budget with its current-period spend.",
       .example = "bursarctl budget list",
       .run = BudgetList},
      {.words = {"budget", "delete"},
       .args = {"NAME"},
       .flags = {"reason"},
       .synopsis = "NAME [--reason TEXT]",
       .summary = "Delete a budget.",
       .details = "Its recorded spend stays in the ledger; open reservations "
                  "against it still settle.",
       .example = "bursarctl budget delete team-search --reason 'team merged'",
       .run = BudgetDelete},
      {.words = {"audit"},
       .flags = {"limit"},
       .synopsis = "[--limit N]",
       .summary = "Show who changed what, newest first.",
       .example = "bursarctl audit --limit 20",
       .run = Audit},
  };
}

}  // namespace bursar::cli
