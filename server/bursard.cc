// bursard: the Bursar decision service.

#include <pthread.h>
#include <signal.h>

#include <fstream>
#include <memory>
#include <string>
#include <thread>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "grpcpp/ext/proto_server_reflection_plugin.h"
#include "grpcpp/grpcpp.h"
#include "grpcpp/health_check_service_interface.h"
#include "server/budget_admin.h"
#include "server/clock.h"
#include "server/decider.h"
#include "server/grpc_services.h"
#include "server/http/http_server.h"
#include "server/http/json_api.h"
#include "server/http/portkey_webhook.h"
#include "server/log.h"
#include "server/policy_admin.h"
#include "server/policy_registry.h"
#include "storage/rocks_storage.h"

ABSL_FLAG(std::string, listen, "127.0.0.1:8081",
          "host:port for the gRPC API (Decision, Admin, health, reflection). "
          "Port 0 picks a free port (see --ready_file).");
ABSL_FLAG(std::string, http_listen, "127.0.0.1:8082",
          "host:port for the HTTP/JSON side port (POST /v1/check, "
          "/v1/report, /v1/portkey/webhook). Empty: no HTTP port. Port 0 "
          "picks a free port (see --ready_file).");
ABSL_FLAG(std::string, data_dir, "./data",
          "Directory of the embedded RocksDB database (ledger and policy "
          "versions); created if missing. One "
          "bursard per directory.");
ABSL_FLAG(std::string, policy_dir, "policies/example",
          "Directory of policy YAML files (pricing, defaults). With "
          "--policy_source=store it seeds an empty --data_dir: on the first "
          "start it is compiled and stored as the first policy version; once "
          "a version is stored (or pushed with `bursarctl policy push`), the "
          "stored active version runs after every restart and this "
          "directory is not used (the log says whether it matches). With "
          "--policy_source=dir it always runs and becomes the active "
          "version.");
ABSL_FLAG(std::string, policy_source, "store",
          "Which policy runs at start-up: store (the active version stored "
          "in --data_dir, so a pushed policy survives restarts; "
          "--policy_dir only when none is stored yet) or dir (--policy_dir, "
          "stored and activated as a new version: for operators who deploy "
          "policies with the binary, or to replace a stored version that no "
          "longer compiles).");
ABSL_FLAG(std::string, sync, "group",
          "Durability of acknowledged writes: none (WAL written, not fsynced: "
          "survives a crash of bursard, not of the machine), group (fsync "
          "shared by concurrent writes, acknowledged after it), always (fsync "
          "every write on its own).");
ABSL_FLAG(absl::Duration, reservation_ttl, absl::Minutes(10),
          "How long a Check's reservation waits for its Report; after it the "
          "hold is charged at its estimate and flagged unreported.");
ABSL_FLAG(absl::Duration, settled_retention, absl::Hours(1),
          "How long settled reservations are remembered for idempotent "
          "retries of Check (same request_id) and Report.");
ABSL_FLAG(absl::Duration, shutdown_grace, absl::Seconds(10),
          "On SIGTERM/SIGINT: how long in-flight calls may take to finish.");
ABSL_FLAG(std::string, ready_file, "",
          "If set, bursard writes the address it listens on to this file once "
          "it serves (for scripts and tests that start it on port 0): the "
          "gRPC host:port on the first line, then http=host:port when the "
          "HTTP port is on.");
ABSL_FLAG(std::string, testing_clock_file, "",
          "Testing only: read the current time (RFC 3339) from this file "
          "instead of the system clock.");

namespace bursar::server {
namespace {

using LF = LogField;

int Run() {
  // Signals go to the main thread's sigwait only; block them before any
  // thread starts so every thread inherits the mask.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  absl::StatusOr<storage::SyncMode> sync =
      storage::ParseSyncMode(absl::GetFlag(FLAGS_sync));
  if (!sync.ok()) {
    Log(LogLevel::kError, "bad flag", {LF{"flag", "--sync"},
                                       LF{"error", std::string(sync.status().message())}});
    return 2;
  }
  absl::StatusOr<PolicySource> policy_source =
      ParsePolicySource(absl::GetFlag(FLAGS_policy_source));
  if (!policy_source.ok()) {
    Log(LogLevel::kError, "bad flag",
        {LF{"flag", "--policy_source"},
         LF{"error", std::string(policy_source.status().message())}});
    return 2;
  }
  if (const std::string http_listen = absl::GetFlag(FLAGS_http_listen);
      !http_listen.empty()) {
    if (auto parsed = http::ParseHostPort(http_listen); !parsed.ok()) {
      Log(LogLevel::kError, "bad flag",
          {LF{"flag", "--http_listen"},
           LF{"error", std::string(parsed.status().message())}});
      return 2;
    }
  }
  const absl::Duration ttl = absl::GetFlag(FLAGS_reservation_ttl);
  if (ttl <= absl::ZeroDuration()) {
    Log(LogLevel::kError, "bad flag",
        {LF{"flag", "--reservation_ttl"}, LF{"error", "must be positive"}});
    return 2;
  }

  std::unique_ptr<Clock> clock;
  if (absl::GetFlag(FLAGS_testing_clock_file).empty()) {
    clock = std::make_unique<SystemClock>();
  } else {
    clock = std::make_unique<FileClock>(absl::GetFlag(FLAGS_testing_clock_file));
    Log(LogLevel::kWarning, "using the testing clock",
        {LF{"file", absl::GetFlag(FLAGS_testing_clock_file)}});
  }

  storage::RocksLedgerOptions ledger_options;
  ledger_options.path = absl::GetFlag(FLAGS_data_dir);
  ledger_options.sync = *sync;
  ledger_options.settled_retention = absl::GetFlag(FLAGS_settled_retention);
  const absl::Time open_started = absl::Now();
  absl::StatusOr<storage::RocksStorage> storage =
      storage::OpenRocksStorage(ledger_options);
  if (!storage.ok()) {
    Log(LogLevel::kError, "cannot open the ledger",
        {LF{"data_dir", ledger_options.path},
         LF{"error", std::string(storage.status().message())}});
    return 1;
  }
  std::unique_ptr<storage::Ledger>& ledger = storage->ledger;
  Log(LogLevel::kInfo, "ledger open",
      {LF{"data_dir", ledger_options.path},
       LF{"sync", absl::GetFlag(FLAGS_sync)},
       LF{"open_holds", absl::StrCat(ledger->open_holds())},
       LF{"took", absl::FormatDuration(absl::Now() - open_started)}});

  const std::string policy_dir = absl::GetFlag(FLAGS_policy_dir);
  absl::StatusOr<StartupPolicy> initial = LoadStartupPolicy(
      storage->policy_versions.get(), policy_dir, *policy_source, clock->Now());
  if (!initial.ok()) {
    Log(LogLevel::kError, "cannot load policies",
        {LF{"dir", policy_dir},
         LF{"source", absl::GetFlag(FLAGS_policy_source)},
         LF{"error", std::string(initial.status().message())}});
    return 1;
  }
  for (const policy::Diagnostic& warning : initial->warnings) {
    Log(LogLevel::kWarning, "policy warning",
        {LF{"diagnostic", policy::FormatDiagnostic(warning)}});
  }
  PolicyRegistry policies(initial->policy);
  const std::string& version = initial->policy->version();
  if (initial->source == "dir") {
    Log(LogLevel::kInfo, "policy loaded",
        {LF{"source", "dir"}, LF{"dir", policy_dir}, LF{"version", version},
         LF{"previous", initial->previous_version},
         LF{"models", absl::StrCat(initial->policy->prices().size())}});
  } else {
    Log(LogLevel::kInfo, "policy loaded",
        {LF{"source", "store"}, LF{"version", version},
         LF{"models", absl::StrCat(initial->policy->prices().size())},
         LF{"policy_dir", initial->dir_matches
                              ? std::string("matches the stored version")
                              : std::string("differs")}});
    if (!initial->dir_matches) {
      // A pushed version outlives the directory bursard was started with:
      // say so, so nobody edits --policy_dir expecting it to run.
      Log(LogLevel::kWarning, "the stored active policy runs",
          {LF{"version", version}, LF{"dir", policy_dir},
           LF{"note", initial->dir_note}});
    }
  }

  if (initial->shadow != nullptr) {
    // The counts start again: they are kept in memory only.
    policies.SetShadow(std::make_shared<const ShadowRun>(
        initial->shadow, version, clock->Now()));
    Log(LogLevel::kInfo, "policy shadow restored",
        {LF{"version", initial->shadow->version()}, LF{"active", version}});
  }
  if (!initial->shadow_note.empty()) {
    Log(LogLevel::kWarning, "running without a shadow policy",
        {LF{"note", initial->shadow_note}});
  }

  Decider decider(ledger.get(), &policies, clock.get(),
                  DeciderOptions{.reservation_ttl = ttl});
  BudgetAdmin budget_admin(ledger.get(), clock.get());
  PolicyAdmin policy_admin(storage->policy_versions.get(), &policies,
                           clock.get());
  DecisionService decision_service(&decider);
  AdminService admin_service(&budget_admin, &policy_admin);

  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort(absl::GetFlag(FLAGS_listen),
                           grpc::InsecureServerCredentials(), &port);
  builder.RegisterService(&decision_service);
  builder.RegisterService(&admin_service);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (server == nullptr || port == 0) {
    Log(LogLevel::kError, "cannot listen",
        {LF{"addr", absl::GetFlag(FLAGS_listen)}});
    return 1;
  }
  const std::string listen = absl::GetFlag(FLAGS_listen);
  const std::string bound =
      absl::StrCat(listen.substr(0, listen.rfind(':')), ":", port);
  Log(LogLevel::kInfo, "serving", {LF{"addr", bound}});

  // The HTTP/JSON side port calls the same Decider. Routes are added here;
  // http_server.SetGate(...) is the one place that sees every HTTP request's
  // headers before dispatch (for auth).
  http::DeciderCalls decider_calls(&decider);
  http::PortkeyWebhook portkey_webhook(&decider_calls, clock.get());
  http::HttpServer http_server;
  http::AddDecisionRoutes(&http_server, &decider_calls);
  http::AddPortkeyRoutes(&http_server, &portkey_webhook);
  const std::string http_listen = absl::GetFlag(FLAGS_http_listen);
  if (!http_listen.empty()) {
    if (absl::Status s = http_server.Start(http_listen); !s.ok()) {
      Log(LogLevel::kError, "cannot listen",
          {LF{"flag", "--http_listen"}, LF{"addr", http_listen},
           LF{"error", std::string(s.message())}});
      server->Shutdown();
      return 1;
    }
    Log(LogLevel::kInfo, "serving HTTP",
        {LF{"addr", http_server.bound_address()}});
  }

  if (!absl::GetFlag(FLAGS_ready_file).empty()) {
    const std::string path = absl::GetFlag(FLAGS_ready_file);
    {
      std::ofstream out(path + ".tmp");
      out << bound << "\n";
      if (!http_listen.empty()) {
        out << "http=" << http_server.bound_address() << "\n";
      }
    }
    std::rename((path + ".tmp").c_str(), path.c_str());
  }

  absl::Notification stopping;
  std::thread expirer([&] {
    while (!stopping.WaitForNotificationWithTimeout(absl::Seconds(1))) {
      absl::StatusOr<int> expired = ledger->ExpireHolds(clock->Now());
      if (!expired.ok()) {
        Log(LogLevel::kError, "expiring holds failed",
            {LF{"error", std::string(expired.status().message())}});
      } else if (*expired > 0) {
        Log(LogLevel::kInfo, "reservations expired unreported",
            {LF{"count", absl::StrCat(*expired)}});
      }
    }
  });

  int signal_number = 0;
  sigwait(&signals, &signal_number);
  Log(LogLevel::kInfo, "draining", {LF{"signal", strsignal(signal_number)}});
  // HTTP first: it finishes the requests it has, then gRPC drains.
  http_server.Stop();
  server->Shutdown(std::chrono::system_clock::now() +
                   absl::ToChronoSeconds(absl::GetFlag(FLAGS_shutdown_grace)));
  server->Wait();
  stopping.Notify();
  expirer.join();
  // Closes RocksDB after the last write (when both stores are gone).
  storage->policy_versions.reset();
  ledger.reset();
  Log(LogLevel::kInfo, "stopped");
  return 0;
}

}  // namespace
}  // namespace bursar::server

int main(int argc, char** argv) {
  // Debian's abseil checks every mutex acquisition for lock-order cycles
  // (3.7% of bursard's wall time under load, docs/benchmarks.md); the
  // lock order is checked at compile time by the thread-safety annotations
  // (clang -Wthread-safety) instead.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  absl::SetProgramUsageMessage(
      "Bursar decision service: budgets and policies for LLM calls.\n"
      "Usage: bursard [--listen=127.0.0.1:8081] [--http_listen=127.0.0.1:8082] "
      "[--data_dir=./data] "
      "[--policy_dir=policies/example] [--policy_source=store|dir] "
      "[--sync=none|group|always]\n"
      "Policies: the active policy version stored in --data_dir runs; "
      "--policy_dir only seeds an empty --data_dir (or runs with "
      "--policy_source=dir). Push new versions with `bursarctl policy "
      "push`.");
  absl::ParseCommandLine(argc, argv);
  return bursar::server::Run();
}
