#include "cli/usage_commands.h"

#include <cstdint>
#include <iostream>
#include <map>

#include "absl/flags/flag.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "bursar/v1/admin.grpc.pb.h"
#include "cli/arguments.h"
#include "cli/output.h"
#include "policy/money.h"

ABSL_FLAG(std::string, by, "",
          "usage: dimensions to group by, comma-separated: budget, instance, "
          "model, provider, or label keys the policy lists under "
          "attribution.dimensions (e.g. team,feature). Default: totals only.");
ABSL_FLAG(std::string, since, "7d",
          "usage: the start of the range, as a duration back from now (30d, "
          "12h, 90m) or an RFC 3339 time.");
ABSL_FLAG(std::string, until, "",
          "usage: the end of the range (RFC 3339). Default: now.");
ABSL_FLAG(std::string, filter, "",
          "usage: only usage whose dimensions have these values, as "
          "key=value,key=value (e.g. team=search,model=gpt-4.1).");
ABSL_FLAG(int32_t, top, 0,
          "usage: only the N rows of highest cost (the total still covers "
          "all). 0: all rows.");
ABSL_FLAG(bool, csv, false, "usage: print CSV instead of a table.");
ABSL_FLAG(std::string, scope, "",
          "signal report: what the value measured, e.g. "
          "model:gpt-4.1-mini.");
ABSL_FLAG(std::string, at, "",
          "signal report: when it was measured (RFC 3339). Default: now.");

namespace bursar::cli {
namespace {

std::string CsvField(absl::string_view text) {
  if (text.find_first_of(",\"\r\n") == absl::string_view::npos) {
    return std::string(text);
  }
  return absl::StrCat("\"", absl::StrReplaceAll(text, {{"\"", "\"\""}}), "\"");
}

std::vector<std::string> SplitBy(absl::string_view text) {
  std::vector<std::string> out;
  for (absl::string_view part : absl::StrSplit(text, ',', absl::SkipEmpty())) {
    out.emplace_back(absl::StripAsciiWhitespace(part));
  }
  return out;
}

int Usage(const CommandContext& context,
          const std::vector<std::string>& /*args*/) {
  v1::GetUsageRequest request;
  const std::vector<std::string> group_by = SplitBy(absl::GetFlag(FLAGS_by));
  for (const std::string& g : group_by) request.add_group_by(g);
  absl::StatusOr<absl::Time> since =
      ParseSince(absl::GetFlag(FLAGS_since), absl::Now());
  if (!since.ok()) return UsageError(context.command, since.status().message());
  request.set_start(
      absl::FormatTime(absl::RFC3339_full, *since, absl::UTCTimeZone()));
  request.set_end(absl::GetFlag(FLAGS_until));
  absl::StatusOr<std::map<std::string, std::string>> filter =
      ParseLabelList(absl::GetFlag(FLAGS_filter));
  if (!filter.ok()) {
    return UsageError(context.command,
                      absl::StrCat("--filter: ", filter.status().message()));
  }
  for (const auto& [k, v] : *filter) (*request.mutable_filter())[k] = v;
  request.set_top_n(absl::GetFlag(FLAGS_top));
  if (absl::GetFlag(FLAGS_csv) && context.json) {
    return UsageError(context.command, "give --csv or --json, not both");
  }
  v1::GetUsageResponse response;
  const grpc::Status status =
      AdminStub(context)->GetUsage(NewCall(context).get(), request, &response);
  if (!status.ok()) return RpcError(context, status);
  if (context.json) return PrintJson(response);
  if (absl::GetFlag(FLAGS_csv)) {
    std::cout << RenderUsageCsv(group_by, response);
  } else {
    std::cout << "Usage from " << response.start() << " to " << response.end()
              << "\n"
              << RenderUsageTable(group_by, response);
  }
  return kExitOk;
}

std::string SignalLine(const v1::Signal& s) {
  return absl::StrCat(
      s.name(), " = ", s.value(),
      s.scope().empty() ? "" : absl::StrCat(" (", s.scope(), ")"), " at ",
      s.time(),
      s.reported_by().empty() ? "" : absl::StrCat(" by ", s.reported_by()));
}

int SignalReport(const CommandContext& context,
                 const std::vector<std::string>& args) {
  double value = 0;
  if (!absl::SimpleAtod(args[1], &value)) {
    return UsageError(context.command,
                      absl::StrCat("VALUE \"", args[1],
                                   "\" is not a number; write e.g. 0.93"));
  }
  v1::ReportSignalRequest request;
  v1::Signal* signal = request.mutable_signal();
  signal->set_name(args[0]);
  signal->set_value(value);
  signal->set_scope(absl::GetFlag(FLAGS_scope));
  signal->set_time(absl::GetFlag(FLAGS_at));
  v1::ReportSignalResponse response;
  const grpc::Status status = AdminStub(context)->ReportSignal(
      NewCall(context).get(), request, &response);
  if (!status.ok()) return RpcError(context, status);
  if (context.json) return PrintJson(response);
  std::cout << "Recorded " << SignalLine(response.signal()) << "\n";
  return kExitOk;
}

int SignalList(const CommandContext& context,
               const std::vector<std::string>& /*args*/) {
  v1::ListSignalsResponse response;
  const grpc::Status status = AdminStub(context)->ListSignals(
      NewCall(context).get(), v1::ListSignalsRequest(), &response);
  if (!status.ok()) return RpcError(context, status);
  if (context.json) return PrintJson(response);
  if (response.signals().empty()) {
    std::cout << "No signals. Report one with 'bursarctl signal report'.\n";
    return kExitOk;
  }
  Table table({"NAME", "VALUE", "SCOPE", "TIME", "REPORTED BY"});
  table.AlignRight(1);
  for (const v1::Signal& s : response.signals()) {
    table.AddRow({s.name(), absl::StrCat(s.value()), OrDash(s.scope()),
                  s.time(), OrDash(s.reported_by())});
  }
  std::cout << table.Render();
  return kExitOk;
}

}  // namespace

absl::StatusOr<absl::Time> ParseSince(absl::string_view text, absl::Time now) {
  absl::Time t;
  std::string error;
  if (absl::ParseTime(absl::RFC3339_full, text, &t, &error)) return t;
  int64_t days = 0;
  absl::Duration back;
  if (absl::EndsWith(text, "d") &&
      absl::SimpleAtoi(text.substr(0, text.size() - 1), &days) && days > 0 &&
      days <= 10000) {
    return now - absl::Hours(24 * days);
  }
  if (absl::ParseDuration(text, &back) && back > absl::ZeroDuration()) {
    return now - back;
  }
  return absl::InvalidArgumentError(absl::StrCat(
      "--since \"", text,
      "\" is neither a duration back from now (30d, 12h, 90m) nor an RFC "
      "3339 time (2026-03-01T00:00:00Z)"));
}

std::string RenderUsageTable(const std::vector<std::string>& group_by,
                             const v1::GetUsageResponse& response) {
  std::vector<std::string> headers;
  for (const std::string& g : group_by) {
    headers.push_back(absl::AsciiStrToUpper(g));
  }
  const size_t first = headers.size();
  for (const char* h : {"COST", "REQUESTS", "SUCCESSES", "FAILURES", "RETRIES",
                        "EXPIRED", "INPUT TOKENS", "CACHED", "OUTPUT TOKENS"}) {
    headers.push_back(h);
  }
  Table table(headers);
  for (size_t c = first; c < headers.size(); ++c) table.AlignRight(c);
  auto add = [&](std::vector<std::string> cells, const v1::UsageRow& row) {
    for (std::string& c : cells) {
      if (c.empty()) c = "(none)";
    }
    cells.push_back(FormatUsd(row.cost_nanos()));
    for (int64_t n : {row.requests(), row.successes(), row.failures(),
                      row.retries(), row.expired(), row.input_tokens(),
                      row.cached_input_tokens(), row.output_tokens()}) {
      cells.push_back(absl::StrCat(n));
    }
    table.AddRow(std::move(cells));
  };
  for (const v1::UsageRow& row : response.rows()) {
    add({row.group().begin(), row.group().end()}, row);
  }
  std::vector<std::string> total(group_by.size());
  if (!total.empty()) total[0] = "TOTAL";
  if (!group_by.empty()) {
    for (size_t i = 1; i < total.size(); ++i) total[i] = " ";
  }
  add(group_by.empty() ? std::vector<std::string>() : total, response.total());
  std::string out = table.Render();
  if (response.rows_omitted() > 0) {
    absl::StrAppend(&out, "(", response.rows_omitted(),
                    " more rows left out by --top)\n");
  }
  return out;
}

std::string RenderUsageCsv(const std::vector<std::string>& group_by,
                           const v1::GetUsageResponse& response) {
  std::vector<std::string> header;
  for (const std::string& g : group_by) header.push_back(CsvField(g));
  for (const char* h :
       {"cost_usd", "requests", "successes", "failures", "retries", "cancelled",
        "expired", "expired_estimate_usd", "input_tokens",
        "cached_input_tokens", "output_tokens"}) {
    header.push_back(h);
  }
  std::string out = absl::StrCat(absl::StrJoin(header, ","), "\n");
  for (const v1::UsageRow& row : response.rows()) {
    std::vector<std::string> cells;
    for (const std::string& g : row.group()) cells.push_back(CsvField(g));
    cells.push_back(policy::FormatUsdNanos(row.cost_nanos()));
    for (int64_t n : {row.requests(), row.successes(), row.failures(),
                      row.retries(), row.cancelled(), row.expired()}) {
      cells.push_back(absl::StrCat(n));
    }
    cells.push_back(policy::FormatUsdNanos(row.expired_estimate_nanos()));
    for (int64_t n :
         {row.input_tokens(), row.cached_input_tokens(), row.output_tokens()}) {
      cells.push_back(absl::StrCat(n));
    }
    absl::StrAppend(&out, absl::StrJoin(cells, ","), "\n");
  }
  return out;
}

std::vector<Command> UsageCommands() {
  return {
      {.words = {"usage"},
       .flags = {"by", "since", "until", "filter", "top", "csv"},
       .synopsis = "[--by DIM,...] [--since 30d|TIME] [--until TIME] "
                   "[--filter k=v,...] [--top N] [--csv | --json]",
       .summary = "Show spend and usage grouped by team, feature, model, ...",
       .details = "Reads the hourly usage rollups (an hour counts when it "
                  "starts in the range). Rows are sorted by cost, highest "
                  "first; TOTAL covers every row, also those --top leaves "
                  "out. Values over the policy's max_values_per_dimension "
                  "show as \"other\", calls without the label as (none).",
       .example = "bursarctl usage --by team,feature --since 30d",
       .run = Usage},
      {.words = {"signal", "report"},
       .args = {"NAME", "VALUE"},
       .flags = {"scope", "at"},
       .synopsis = "NAME VALUE [--scope TEXT] [--at TIME]",
       .summary = "Record a quality signal that policies read as "
                  "signal[\"NAME\"].",
       .details = "Keeps the last value per name. Accuracies are ratios: "
                  "0.93 for 93%.",
       .example = "bursarctl signal report golden-accuracy 0.93 --scope "
                  "model:gpt-4.1-mini",
       .run = SignalReport},
      {.words = {"signal", "list"},
       .synopsis = "",
       .summary = "Show the last value of every quality signal.",
       .example = "bursarctl signal list",
       .run = SignalList},
  };
}

}  // namespace bursar::cli
