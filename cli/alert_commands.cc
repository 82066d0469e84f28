#include "cli/alert_commands.h"

#include <cstdint>
#include <iostream>
#include <memory>

#include "absl/flags/declare.h"
#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"
#include "cli/output.h"
#include "grpcpp/grpcpp.h"

ABSL_DECLARE_FLAG(int32_t, limit);
ABSL_FLAG(bool, dead_letters, false,
          "alerts list: also list webhook deliveries that failed their last "
          "try.");
ABSL_FLAG(int32_t, count, 0,
          "alerts watch: stop after this many alerts. 0: watch until "
          "interrupted or bursard stops.");

namespace bursar::cli {
namespace {

int List(const CommandContext& context, const std::vector<std::string>&) {
  const int32_t limit = absl::GetFlag(FLAGS_limit);
  if (limit <= 0 || limit > 1000) {
    return UsageError(context.command,
                      "--limit: must be 1 to 1000, e.g. --limit=20");
  }
  v1::ListAlertsRequest request;
  request.set_limit(limit);
  request.set_include_dead_letters(absl::GetFlag(FLAGS_dead_letters));
  v1::ListAlertsResponse response;
  const grpc::Status status = AdminStub(context)->ListAlerts(
      NewCall(context).get(), request, &response);
  if (!status.ok()) return RpcError(context, status);
  if (context.json) return PrintJson(response);
  if (response.alerts().empty()) {
    std::cout << "No alerts have fired.\n";
  } else {
    Table table({"FIRED", "SEVERITY", "RULE", "SCOPE", "PERIOD", "MESSAGE"});
    for (const v1::Alert& a : response.alerts()) {
      table.AddRow({a.fired_at(), a.severity(), a.rule(), a.scope(),
                    OrDash(a.period_start()), a.message()});
    }
    std::cout << table.Render();
  }
  if (absl::GetFlag(FLAGS_dead_letters)) {
    if (response.dead_letters().empty()) {
      std::cout << "\nNo webhook deliveries failed.\n";
    } else {
      std::cout << "\nWebhook deliveries that failed their last try:\n";
      Table table({"FAILED", "ALERT", "URL", "TRIES", "ERROR"});
      table.AlignRight(3);
      for (const v1::AlertDeadLetter& d : response.dead_letters()) {
        table.AddRow({d.failed_at(), d.alert_id(), d.url(),
                      absl::StrCat(d.attempts()), d.last_error()});
      }
      std::cout << table.Render();
    }
  }
  return kExitOk;
}

int Watch(const CommandContext& context, const std::vector<std::string>&) {
  const int32_t count = absl::GetFlag(FLAGS_count);
  if (count < 0) {
    return UsageError(context.command, "--count: must be 0 or more");
  }
  // No deadline: a watch lasts until it is interrupted.
  grpc::ClientContext call;
  if (!context.token.empty()) {
    call.AddMetadata("authorization", "Bearer " + context.token);
  }
  std::unique_ptr<grpc::ClientReader<v1::Alert>> reader =
      AdminStub(context)->WatchAlerts(&call, v1::WatchAlertsRequest());
  v1::Alert alert;
  int32_t seen = 0;
  while ((count == 0 || seen < count) && reader->Read(&alert)) {
    ++seen;
    if (context.json) {
      if (PrintJson(alert) != kExitOk) return kExitRpcError;
    } else {
      std::cout << AlertLine(alert) << "\n";
    }
    std::cout.flush();
  }
  if (count != 0 && seen >= count) {
    call.TryCancel();
    return kExitOk;
  }
  const grpc::Status status = reader->Finish();
  if (!status.ok()) return RpcError(context, status);
  return kExitOk;
}

}  // namespace

std::string AlertLine(const v1::Alert& alert) {
  std::string line =
      absl::StrCat(alert.fired_at(), "  ", alert.severity(), "  ", alert.rule(),
                   "  ", alert.scope(), "  ", alert.message());
  if (alert.missed_before() > 0) {
    absl::StrAppend(&line, "  (missed ", alert.missed_before(),
                    " alerts before this one; see bursarctl alerts list)");
  }
  return line;
}

std::vector<Command> AlertCommands() {
  return {
      {.words = {"alerts", "list"},
       .flags = {"limit", "dead_letters"},
       .synopsis = "[--limit N] [--dead_letters]",
       .summary = "Show the alerts that fired, newest first.",
       .details = "Each alert fires once per rule, scope and period "
                  "(docs/alerts.md). --dead_letters also shows webhook "
                  "deliveries that failed their last try.",
       .example = "bursarctl alerts list --limit 20 --dead_letters",
       .run = List},
      {.words = {"alerts", "watch"},
       .flags = {"count"},
       .synopsis = "[--count N]",
       .summary = "Print alerts as they fire, one line each.",
       .details = "Runs until interrupted, until bursard stops, or after "
                  "--count alerts. Only alerts that fire after it starts; "
                  "`alerts list` shows the earlier ones. With --json, one "
                  "JSON object per alert.",
       .example = "bursarctl alerts watch --json",
       .run = Watch},
  };
}

}  // namespace bursar::cli
