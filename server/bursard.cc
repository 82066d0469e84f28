// bursard: the Bursar decision service.

#include <pthread.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "alerts/alert_engine.h"
#include "alerts/alert_hub.h"
#include "alerts/webhook_notifier.h"
#include "grpcpp/ext/proto_server_reflection_plugin.h"
#include "grpcpp/grpcpp.h"
#include "grpcpp/health_check_service_interface.h"
#include "grpcpp/security/server_credentials.h"
#include "grpcpp/security/tls_certificate_provider.h"
#include "grpcpp/security/tls_credentials_options.h"
#include "server/alerts/alert_admin.h"
#include "server/alerts/alert_metrics.h"
#include "server/auth/authenticator.h"
#include "server/auth/method_table.h"
#include "server/auth/tls_files.h"
#include "server/auth/tokens_file.h"
#include "server/auth/transport.h"
#include "server/budget_admin.h"
#include "server/backup.h"
#include "server/clock.h"
#include "server/decider.h"
#include "server/decision_metrics.h"
#include "server/envoy_rls.h"
#include "server/grpc_services.h"
#include "server/http/grpc_health_readiness.h"
#include "server/http/health_routes.h"
#include "server/http/http_server.h"
#include "server/http/json_api.h"
#include "server/http/portkey_webhook.h"
#include "server/kpi_rollups.h"
#include "server/log.h"
#include "server/metrics.h"
#include "server/policy_admin.h"
#include "server/policy_registry.h"
#include "server/usage_admin.h"
#include "server/usage_attribution.h"
#include "server/usage_retention.h"
#include "storage/rocks_storage.h"

ABSL_FLAG(std::string, listen, "127.0.0.1:8081",
          "host:port for the gRPC API (Decision, Admin, health, reflection). "
          "Port 0 picks a free port (see --ready_file).");
ABSL_FLAG(std::string, http_listen, "127.0.0.1:8082",
          "host:port for the HTTP/JSON side port (POST /v1/check, "
          "/v1/report, /v1/portkey/webhook; GET /metrics, /healthz, "
          "/readyz). Empty: no HTTP port. Port 0 "
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
ABSL_FLAG(absl::Duration, expiry_interval, absl::Seconds(1),
          "How often reservations past their TTL are looked for and expired "
          "(tests use a short one to see expiry at once).");
ABSL_FLAG(int32_t, usage_retention_days, 400,
          "Usage rollups (GetUsage, kpi.*) older than this many days are "
          "deleted, checked hourly (docs/usage-and-kpis.md). At least 8: KPI "
          "windows reach back a week.");
ABSL_FLAG(absl::Duration, usage_fold_interval, absl::Milliseconds(100),
          "How often the usage records of settled Reports are folded into "
          "the usage rollups in the background (decision 022); reads see "
          "every Report either way. 0 or inf: only reads and retention fold.");
ABSL_FLAG(absl::Duration, settled_retention, absl::Hours(1),
          "How long settled reservations are remembered for idempotent "
          "retries of Check (same request_id) and Report.");
ABSL_FLAG(int32_t, rocksdb_memtable_mb, 64,
          "Memory for RocksDB's memtables, all column families together "
          "(MiB, at least 1); past it the largest is flushed.");
ABSL_FLAG(int32_t, rocksdb_block_cache_mb, 16,
          "RocksDB's block cache, shared by all column families (MiB, at "
          "least 1).");
ABSL_FLAG(absl::Duration, shutdown_grace, absl::Seconds(10),
          "On SIGTERM/SIGINT: how long in-flight calls may take to finish.");
ABSL_FLAG(std::string, ready_file, "",
          "If set, bursard writes the address it listens on to this file once "
                    "it serves (for scripts and tests that start it on port 0): the "
          "gRPC host:port on the first line, then http=host:port when the "
          "HTTP port is on.");
ABSL_FLAG(std::string, tls_cert, "",
          "PEM certificate chain bursard presents (TLS), server certificate "
          "first; with --tls_key. Reloaded when the file changes (checked "
          "every --auth_reload_interval): replace it atomically (write, then "
          "rename) with the key.");
ABSL_FLAG(std::string, tls_key, "",
          "PEM private key of --tls_cert (unencrypted). Reloaded with it.");
ABSL_FLAG(std::string, tls_client_ca, "",
          "PEM CA bundle: mutual TLS. Every client must present a "
          "certificate signed by one of these CAs, or the connection is "
          "refused. Reloaded when the file changes.");
ABSL_FLAG(std::string, tokens_file, "",
          "YAML file of bearer tokens: name, role (gateway, finance, "
          "policy-admin, viewer) and the token's sha256 (`bursarctl token "
          "new` prints an entry). Callers send `authorization: Bearer "
          "<token>`. Reloaded when the file changes; a bad new file is "
          "logged and the old tokens stay. See docs/security.md.");
ABSL_FLAG(bool, roles_from_client_cert, false,
          "With --tls_client_ca: a client certificate whose subject has "
          "OU=<role> is that role, named by its CN (a bearer token, when "
          "sent, still decides).");
ABSL_FLAG(absl::Duration, auth_reload_interval, absl::Seconds(60),
          "How often the TLS files and --tokens_file are checked for "
          "changes (at least 1s).");
ABSL_FLAG(bool, insecure, false,
          "Serve plaintext gRPC (no TLS), for development: only on a "
          "loopback --listen address unless --allow_insecure_remote. Without "
          "--tokens_file every caller then has every role.");
ABSL_FLAG(bool, allow_insecure_remote, false,
          "With --insecure: allow a non-loopback --listen address (a "
          "network you trust carries plaintext and any tokens).");
ABSL_FLAG(std::vector<std::string>, alert_webhook, {},
          "Comma-separated URLs (http:// or https://) that every fired alert "
          "is POSTed to as JSON, retried with backoff (docs/alerts.md). For "
          "Slack format, signatures or other options use "
          "--alert_webhooks_file.");
ABSL_FLAG(std::string, alert_webhooks_file, "",
          "YAML file of alert webhooks: url, format (json|slack), secret or "
          "secret_env (HMAC-SHA256 signature header X-Bursar-Signature), "
          "timeout, max_attempts, initial_backoff, max_backoff, "
          "min_severity (docs/alerts.md). Read at start-up.");
ABSL_FLAG(absl::Duration, alert_interval, absl::Seconds(5),
          "How often the alert engine evaluates every budget scope; it also "
          "runs soon after Reports (at most once per --alert_min_gap).");
ABSL_FLAG(absl::Duration, alert_min_gap, absl::Seconds(1),
          "The least time between two alert evaluations started by Reports.");
ABSL_FLAG(int, max_in_flight_calls, 256,
          "RPC handlers running at once; past it a call gets "
          "RESOURCE_EXHAUSTED at once instead of queueing (docs/operations.md)."
          " Handlers take microseconds unless they wait for an fsync, so the "
          "default leaves room for a few hundred gateways sharing one group "
          "fsync on a small machine.");
ABSL_FLAG(int, worker_threads, 32,
          "Threads that run admitted RPCs (gRPC's own threads only admit or "
          "refuse them); they mostly wait for group fsyncs, so more than the "
          "cores. 0: run RPCs on gRPC's threads (then gRPC queues calls "
          "unseen while they wait).");
ABSL_FLAG(int, max_receive_message_bytes, 4 << 20,
          "Largest gRPC request accepted (bytes); larger ones get "
          "RESOURCE_EXHAUSTED before any work. Must exceed a full policy push "
          "(3 MiB).");
ABSL_FLAG(std::string, backup_dir, "",
          "Directory on this machine that Admin.CreateBackup (bursarctl "
          "backup) writes checkpoints into; empty: backups are off.");
ABSL_FLAG(std::string, restore_from, "",
          "At start, copy this backup into --data_dir, which must not exist "
          "or be empty (a restart with the same flags carries on); see "
          "docs/operations.md.");
ABSL_FLAG(std::string, testing_clock_file, "",
          "Testing only: read the current time (RFC 3339) from this file "
          "instead of the system clock.");

namespace bursar::server {
namespace {

using LF = LogField;

// bursar_budget_* metrics cover at most this many budgets (by name).
constexpr size_t kMaxBudgetMetrics = 100;

// Background work (alert passes, KPI refreshes, expiry) runs at a lower
// scheduling priority (nice +10) than the threads that answer calls: on a
// machine with few cores its bursts otherwise delay Checks. Linux sets nice
// per thread; a failure leaves the priority as it was.
void LowerThisThreadsPriority() {
  setpriority(PRIO_PROCESS, static_cast<id_t>(syscall(SYS_gettid)), 10);
}

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
  for (const auto& [flag, mib] :
       {std::make_pair("--rocksdb_memtable_mb",
                       absl::GetFlag(FLAGS_rocksdb_memtable_mb)),
        std::make_pair("--rocksdb_block_cache_mb",
                       absl::GetFlag(FLAGS_rocksdb_block_cache_mb))}) {
    if (mib < 1) {
      Log(LogLevel::kError, "bad flag",
          {LF{"flag", flag},
           LF{"error", absl::StrCat("is ", mib, " MiB; give at least 1")}});
      return 2;
    }
  }

  // Who may connect and call: checked before anything is opened.
  const auth::TransportFlags transport{
      .listen = absl::GetFlag(FLAGS_listen),
      .tls_cert = absl::GetFlag(FLAGS_tls_cert),
      .tls_key = absl::GetFlag(FLAGS_tls_key),
      .tls_client_ca = absl::GetFlag(FLAGS_tls_client_ca),
      .insecure = absl::GetFlag(FLAGS_insecure),
      .allow_insecure_remote = absl::GetFlag(FLAGS_allow_insecure_remote),
      .tokens_file = absl::GetFlag(FLAGS_tokens_file),
      .roles_from_client_cert = absl::GetFlag(FLAGS_roles_from_client_cert),
  };
  if (absl::Status s = auth::CheckTransportFlags(transport); !s.ok()) {
    Log(LogLevel::kError, "refusing to start",
        {LF{"error", std::string(s.message())}});
    return 2;
  }
  const absl::Duration reload_interval =
      absl::GetFlag(FLAGS_auth_reload_interval);
  if (reload_interval < absl::Seconds(1)) {
    Log(LogLevel::kError, "bad flag",
        {LF{"flag", "--auth_reload_interval"}, LF{"error", "at least 1s"}});
    return 2;
  }
  if (absl::Status s = auth::CheckMethodTableCovers(
          {v1::Decision::service_full_name(), v1::Admin::service_full_name(),
           envoy::service::ratelimit::v3::RateLimitService::service_full_name()});
      !s.ok()) {
    Log(LogLevel::kError, "refusing to start",
        {LF{"error", std::string(s.message())}});
    return 1;
  }
  std::vector<auth::TokenEntry> tokens;
  if (!transport.tokens_file.empty()) {
    absl::StatusOr<std::vector<auth::TokenEntry>> loaded =
        auth::LoadTokensFile(transport.tokens_file);
    if (!loaded.ok()) {
      Log(LogLevel::kError, "cannot load the tokens file",
          {LF{"error", std::string(loaded.status().message())}});
      return 2;
    }
    tokens = *std::move(loaded);
  }
  auth::Authenticator authenticator(
      {.enabled = auth::AuthenticationEnabled(transport),
       .roles_from_client_cert = transport.roles_from_client_cert},
      tokens);
  std::shared_ptr<grpc::ServerCredentials> credentials;
  // Watches the TLS files; the credentials hold it while the server runs.
  std::shared_ptr<grpc::experimental::FileWatcherCertificateProvider>
      certificates;
  if (!transport.insecure) {
    absl::StatusOr<auth::TlsFilesSummary> summary = auth::CheckTlsFiles(
        {transport.tls_cert, transport.tls_key, transport.tls_client_ca});
    if (!summary.ok()) {
      Log(LogLevel::kError, "refusing to start",
          {LF{"error", std::string(summary.status().message())}});
      return 2;
    }
    certificates =
        std::make_shared<grpc::experimental::FileWatcherCertificateProvider>(
            transport.tls_key, transport.tls_cert, transport.tls_client_ca,
            static_cast<unsigned>(absl::ToInt64Seconds(reload_interval)));
    grpc::experimental::TlsServerCredentialsOptions options(certificates);
    options.watch_identity_key_cert_pairs();
    if (transport.tls_client_ca.empty()) {
      options.set_cert_request_type(GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE);
    } else {
      options.watch_root_certs();
      options.set_cert_request_type(
          GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY);
    }
    credentials = grpc::experimental::TlsServerCredentials(options);
    Log(LogLevel::kInfo, "tls",
        {LF{"cert", transport.tls_cert}, LF{"subject", summary->subject},
         LF{"not_after", summary->not_after},
         LF{"client_certificates",
            transport.tls_client_ca.empty()
                ? std::string("not asked for")
                : absl::StrCat("required (", summary->client_ca_certs,
                               " CA certificates)")},
         LF{"reload_every", absl::FormatDuration(reload_interval)}});
  } else {
    credentials = grpc::InsecureServerCredentials();
    const bool loopback = auth::IsLoopbackListenAddress(transport.listen);
    Log(LogLevel::kWarning,
        loopback ? "serving plaintext (--insecure)"
                 : "serving plaintext on a non-loopback address "
                   "(--insecure --allow_insecure_remote): tokens and "
                   "budgets cross the network unencrypted",
        {LF{"listen", transport.listen}});
  }
  if (authenticator.enabled()) {
    Log(LogLevel::kInfo, "authentication on",
        {LF{"tokens_file", transport.tokens_file},
         LF{"tokens", absl::StrCat(tokens.size())},
         LF{"roles_from_client_cert",
            transport.roles_from_client_cert ? "true" : "false"}});
  } else {
    Log(LogLevel::kWarning,
        "authentication off: every caller has every role (--insecure "
        "without --tokens_file; for development only)");
  }

  // Alert webhooks: checked before anything is opened.
  std::vector<alerts::WebhookEndpoint> webhooks;
  for (const std::string& url : absl::GetFlag(FLAGS_alert_webhook)) {
    if (url.empty()) continue;
    absl::StatusOr<alerts::WebhookEndpoint> endpoint =
        alerts::ParseWebhookUrl(url);
    if (!endpoint.ok()) {
      Log(LogLevel::kError, "bad flag",
          {LF{"flag", "--alert_webhook"},
           LF{"error", std::string(endpoint.status().message())}});
      return 2;
    }
    webhooks.push_back(*std::move(endpoint));
  }
  if (const std::string file = absl::GetFlag(FLAGS_alert_webhooks_file);
      !file.empty()) {
    std::ifstream in(file);
    std::stringstream content;
    content << in.rdbuf();
    absl::StatusOr<std::vector<alerts::WebhookEndpoint>> endpoints =
        in ? alerts::ParseWebhooksYaml(content.str(), file)
           : absl::InvalidArgumentError(absl::StrCat("cannot read ", file));
    if (!endpoints.ok()) {
      Log(LogLevel::kError, "bad flag",
          {LF{"flag", "--alert_webhooks_file"},
           LF{"error", std::string(endpoints.status().message())}});
      return 2;
    }
    for (alerts::WebhookEndpoint& e : *endpoints) {
      webhooks.push_back(std::move(e));
    }
  }
  if (absl::GetFlag(FLAGS_alert_interval) <= absl::ZeroDuration() ||
      absl::GetFlag(FLAGS_alert_min_gap) < absl::ZeroDuration()) {
    Log(LogLevel::kError, "bad flag",
        {LF{"flag", "--alert_interval/--alert_min_gap"},
         LF{"error",
            "--alert_interval must be positive and --alert_min_gap "
            "not negative"}});
    return 2;
  }

  if (absl::GetFlag(FLAGS_usage_retention_days) < 8) {
    Log(LogLevel::kError, "bad flag",
        {LF{"flag", "--usage_retention_days"},
         LF{"error", absl::StrCat("--usage_retention_days=",
                                  absl::GetFlag(FLAGS_usage_retention_days),
                                  " must be at least 8 (KPI windows reach "
                                  "back a week and an hour)")}});
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

  if (absl::GetFlag(FLAGS_max_in_flight_calls) < 1 ||
      absl::GetFlag(FLAGS_worker_threads) < 0 ||
      absl::GetFlag(FLAGS_max_receive_message_bytes) < (3 << 20) + 4096) {
    Log(LogLevel::kError, "bad flag",
        {LF{"error",
            absl::StrCat("--max_in_flight_calls=",
                         absl::GetFlag(FLAGS_max_in_flight_calls),
                         " must be >= 1, --worker_threads=",
                         absl::GetFlag(FLAGS_worker_threads),
                         " >= 0 and --max_receive_message_bytes=",
                         absl::GetFlag(FLAGS_max_receive_message_bytes),
                         " must be >= 3149824 (a full policy push)")}});
    return 1;
  }
  if (!absl::GetFlag(FLAGS_restore_from).empty()) {
    if (absl::Status s = RestoreDataDir(absl::GetFlag(FLAGS_restore_from),
                                        absl::GetFlag(FLAGS_data_dir));
        !s.ok()) {
      Log(LogLevel::kError, "cannot restore the backup",
          {LF{"backup", absl::GetFlag(FLAGS_restore_from)},
           LF{"data_dir", absl::GetFlag(FLAGS_data_dir)},
           LF{"error", std::string(s.message())}});
      return 1;
    }
  }

  storage::RocksLedgerOptions ledger_options;
  ledger_options.path = absl::GetFlag(FLAGS_data_dir);
  ledger_options.sync = *sync;
  ledger_options.settled_retention = absl::GetFlag(FLAGS_settled_retention);
  ledger_options.memtable_budget_bytes =
      static_cast<size_t>(absl::GetFlag(FLAGS_rocksdb_memtable_mb)) << 20;
  ledger_options.block_cache_bytes =
      static_cast<size_t>(absl::GetFlag(FLAGS_rocksdb_block_cache_mb)) << 20;
  const absl::Time open_started = absl::Now();
  storage::UsageStoreOptions usage_options;
  usage_options.fold_interval = absl::GetFlag(FLAGS_usage_fold_interval);
  absl::StatusOr<storage::RocksStorage> storage =
      storage::OpenRocksStorage(ledger_options, usage_options);
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
  // Policy changes of the last 8 days (KPI windows reach back 7 days and an
  // hour), from the audit log, for the "no policy change" alert.
  NotePolicyChanges(ledger->ListAudit(10'000),
                    clock->Now() - absl::Hours(24 * 8), &policies);
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

  // Prometheus metrics (docs/metrics.md), rendered by MetricsRegistry::Render
  // for GET /metrics.
  MetricsRegistry metrics;
  absl::StatusOr<std::unique_ptr<DecisionMetrics>> decision_metrics =
      DecisionMetrics::Create(&metrics);
  absl::Status metrics_status = decision_metrics.status();
  if (metrics_status.ok()) {
    metrics_status = RegisterLedgerMetrics(&metrics, ledger.get(), clock.get(),
                                           kMaxBudgetMetrics);
  }
  if (metrics_status.ok()) {
    metrics_status = RegisterDatabaseMetrics(&metrics, storage->database_stats);
  }
  if (!metrics_status.ok()) {
    Log(LogLevel::kError, "cannot register metrics",
        {LF{"error", std::string(metrics_status.message())}});
    return 1;
  }
  // Usage rollups, KPIs and signals (docs/usage-and-kpis.md).
  UsageAttribution usage_attribution(storage->usage.get());
  UsageRetention usage_retention(
      storage->usage.get(), clock.get(),
      absl::Hours(24) * absl::GetFlag(FLAGS_usage_retention_days));
  // kpi.* figures are cached (at most 2 s old) and refreshed by the
  // background thread below, so Checks reading kpi.* do no RocksDB I/O but
  // for the first read of a scope and window (docs/usage-and-kpis.md).
  const RollupKpiView kpi_view(storage->usage.get(), ledger.get(), &policies,
                               /*max_staleness=*/absl::Seconds(2));
  // The alert passes read four windows of every budget instance, once per
  // pass: they have a cache of their own, refreshed in one read at the
  // start of each pass, so that the second-by-second refresh above covers
  // only what Checks read.
  const absl::Duration alert_interval = absl::GetFlag(FLAGS_alert_interval);
  const RollupKpiView alert_kpis(storage->usage.get(), ledger.get(), &policies,
                                 /*max_staleness=*/2 * alert_interval);

  // Alerts (docs/alerts.md): the engine runs off the hot path; Reports only
  // wake it.
  alerts::AlertHub alert_hub;
  // With the outbox: deliveries pending at the last stop are sent again.
  alerts::WebhookNotifier webhook_notifier(
      webhooks, storage->alerts.get(), [&clock] { return clock->Now(); },
      /*queue_capacity=*/1000, /*outbox=*/true);
  alerts::AlertEngine alert_engine(
      ledger.get(), storage->alerts.get(),
      [&policies] { return policies.Active(); },
      [&clock] { return clock->Now(); }, &alert_kpis,
      alerts::AlertEngineOptions{
          .interval = alert_interval,
          .min_gap = absl::GetFlag(FLAGS_alert_min_gap),
          .on_error =
              [](const absl::Status& s) {
                Log(LogLevel::kError, "alert evaluation failed",
                    {LF{"error", std::string(s.message())}});
              },
          .outbox =
              [&webhook_notifier](const storage::AlertEntry& alert) {
                return webhook_notifier.Destinations(alert);
              },
          .on_thread_start = LowerThisThreadsPriority,
          .before_pass =
              [&alert_kpis, alert_interval](absl::Time now) {
                alert_kpis.Refresh(now, /*idle=*/std::max(absl::Minutes(1),
                                                          2 * alert_interval));
              }});
  alert_engine.AddListener(&alert_hub);
  alert_engine.AddListener(&webhook_notifier);
  absl::StatusOr<std::unique_ptr<AlertMetrics>> alert_metrics =
      AlertMetrics::Create(
          &metrics, [&webhook_notifier] { return webhook_notifier.stats(); });
  if (!alert_metrics.ok()) {
    Log(LogLevel::kError, "cannot register metrics",
        {LF{"error", std::string(alert_metrics.status().message())}});
    return 1;
  }
  alert_engine.AddListener(alert_metrics->get());
  for (const alerts::WebhookEndpoint& e : webhooks) {
    Log(LogLevel::kInfo, "alert webhook",
        {LF{"url", e.url},
         LF{"format",
            e.format == alerts::WebhookFormat::kSlack ? "slack" : "json"},
         LF{"signed", e.secret.empty() ? "no" : "yes"}});
  }
  AlertWakingObserver alert_waker(decision_metrics->get(), &alert_engine);
  AlertAdmin alert_admin(storage->alerts.get(), &alert_engine, &alert_hub);

  Decider decider(ledger.get(), &policies, clock.get(),
                  DeciderOptions{.reservation_ttl = ttl,
                                 .observer = &alert_waker,
                                 .usage = &usage_attribution,
                                 .kpis = &kpi_view});
  if (absl::Status s = decider.RestoreInFlight(); !s.ok()) {
    Log(LogLevel::kError, "cannot restore the calls in flight",
        {LF{"error", std::string(s.message())}});
    return 1;
  }
  if (absl::Status s = RegisterLimitMetrics(&metrics, &decider, &policies);
      !s.ok()) {
    Log(LogLevel::kError, "cannot register metrics",
        {LF{"error", std::string(s.message())}});
    return 1;
  }
  EnvoyRateLimiter rate_limiter(&decider);
  BudgetAdmin budget_admin(ledger.get(), clock.get());
  PolicyAdmin policy_admin(storage->policy_versions.get(), &policies,
                           clock.get());
  std::unique_ptr<Backups> backups;
  if (!absl::GetFlag(FLAGS_backup_dir).empty()) {
    absl::StatusOr<std::unique_ptr<Backups>> opened =
        Backups::Open(absl::GetFlag(FLAGS_backup_dir),
                      storage->create_checkpoint, clock.get());
    if (!opened.ok()) {
      Log(LogLevel::kError, "bad flag",
          {LF{"error", std::string(opened.status().message())}});
      return 1;
    }
    backups = *std::move(opened);
  }
  // Deadlines are the callers' wall-clock times: the gate compares them with
  // the system clock, also under --testing_clock_file.
  CallGate call_gate(absl::GetFlag(FLAGS_max_in_flight_calls),
                     absl::GetFlag(FLAGS_worker_threads), /*clock=*/nullptr,
                     /*inline_calls=*/1);
  DecisionService decision_service(&decider, &authenticator, &call_gate);
  EnvoyRateLimitService envoy_rls_service(&rate_limiter, &authenticator,
                                          &call_gate);
  UsageAdmin usage_admin(storage->usage.get(), &policies, clock.get());
  AdminService admin_service(&budget_admin, &policy_admin, &authenticator,
                             &call_gate, backups.get(), &alert_admin,
                             &usage_admin);

  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort(absl::GetFlag(FLAGS_listen), credentials, &port);
  builder.SetMaxReceiveMessageSize(
      absl::GetFlag(FLAGS_max_receive_message_bytes));
  builder.RegisterService(&decision_service);
  builder.RegisterService(&admin_service);
  builder.RegisterService(&envoy_rls_service);
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

  // The HTTP/JSON side port calls the same Decider, behind the same roles:
  // Check, Report and the Portkey webhook are the gateway's; /metrics and
  // the probes /healthz and /readyz are open (the port is loopback unless
  // told otherwise).
  http::DeciderCalls decider_calls(&decider);
  // /readyz answers what the gRPC health service says (asked through the
  // in-process channel), for probes that cannot speak gRPC over TLS.
  http::GrpcHealthReadiness readiness(server.get());
  http::PortkeyWebhook portkey_webhook(&decider_calls, clock.get());
  http::HttpServer http_server;
  // Check, Report and the webhook take places in the same gate as gRPC calls.
  http_server.SetCallGate(&call_gate);
  http::AddDecisionRoutes(&http_server, &decider_calls);
  http::AddPortkeyRoutes(&http_server, &portkey_webhook);
  http::AddHealthRoutes(&http_server, &readiness);
  http_server.HandleGet("/metrics", [&metrics] {
    http::HttpReply reply;
    reply.content_type = std::string(kPrometheusContentType);
    reply.body = metrics.Render();
    return reply;
  });
  // Set when the drain begins: from then on the HTTP port, which stays up
  // for the probes until gRPC has drained, refuses new decision calls as
  // gRPC does, so that a gateway retries them on another instance.
  std::atomic<bool> draining{false};
  http_server.SetGate([&authenticator, &draining](
                          const http::HttpRequest& request)
                          -> std::optional<http::HttpReply> {
    if (request.path == "/metrics" || http::IsProbePath(request.path)) {
      return std::nullopt;
    }
    if (draining.load(std::memory_order_relaxed)) {
      return http::StatusReply(absl::UnavailableError(
          "bursard is shutting down; retry on another instance"));
    }
    const absl::string_view method = request.path == "/v1/report"
                                         ? "/bursar.v1.Decision/Report"
                                         : "/bursar.v1.Decision/Check";
    auth::CallCredentials credentials;
    for (const auto& [name, value] : request.headers) {
      if (name == "authorization") credentials.authorization.push_back(value);
    }
    const absl::StatusOr<auth::Caller> caller =
        authenticator.Admit(method, credentials);
    if (caller.ok()) return std::nullopt;
    return http::StatusReply(caller.status());
  });
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

  // The tokens file is reloaded when its inode, size or mtime changes.
  auto file_stamp = [](const std::string& path) {
    struct stat st;
    if (stat(path.c_str(), &st) != 0) return std::string("missing");
    return absl::StrCat(st.st_ino, ":", st.st_size, ":", st.st_mtim.tv_sec, ".",
                        st.st_mtim.tv_nsec);
  };
  std::string tokens_stamp = transport.tokens_file.empty()
                                 ? std::string()
                                 : file_stamp(transport.tokens_file);
  absl::Time next_tokens_check = absl::Now() + reload_interval;
  auto reload_tokens = [&] {
    if (transport.tokens_file.empty() || absl::Now() < next_tokens_check) {
      return;
    }
    next_tokens_check = absl::Now() + reload_interval;
    const std::string stamp = file_stamp(transport.tokens_file);
    if (stamp == tokens_stamp) return;
    absl::StatusOr<std::vector<auth::TokenEntry>> loaded =
        auth::LoadTokensFile(transport.tokens_file);
    if (!loaded.ok()) {
      // Keeps the tokens it has; tries again when the file changes again.
      Log(LogLevel::kError,
          "cannot reload the tokens file; keeping the "
          "tokens loaded before",
          {LF{"error", std::string(loaded.status().message())}});
    } else {
      Log(LogLevel::kInfo, "tokens file reloaded",
          {LF{"tokens_file", transport.tokens_file},
           LF{"tokens", absl::StrCat(loaded->size())}});
      authenticator.SetTokens(*std::move(loaded));
    }
    tokens_stamp = stamp;
  };

  if (absl::StatusOr<int> resent = webhook_notifier.ResendPending();
      !resent.ok()) {
    Log(LogLevel::kError, "cannot read the pending alert deliveries",
        {LF{"error", std::string(resent.status().message())}});
  } else if (*resent > 0) {
    Log(LogLevel::kInfo, "alert deliveries pending since the last stop",
        {LF{"count", absl::StrCat(*resent)}});
  }
  alert_engine.Start();

  absl::Notification stopping;
  std::thread expirer([&] {
    pthread_setname_np(pthread_self(), "expirer");
    LowerThisThreadsPriority();
    const absl::Duration expiry_interval =
        std::max(absl::GetFlag(FLAGS_expiry_interval), absl::Milliseconds(1));
    while (!stopping.WaitForNotificationWithTimeout(expiry_interval)) {
      reload_tokens();
      if (absl::StatusOr<bool> pruned = usage_retention.MaybePrune();
          !pruned.ok()) {
        Log(LogLevel::kError, "pruning the usage rollups failed",
            {LF{"error", std::string(pruned.status().message())}});
      }
      kpi_view.Refresh(clock->Now());
      absl::StatusOr<int> expired = decider.ExpireReservations();
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
  // Not ready from now on, for good: the gRPC health service (and with it
  // /readyz) answers NOT_SERVING. Before server->Shutdown(): /readyz stops
  // calling into the server.
  readiness.Drain();
  draining.store(true, std::memory_order_relaxed);
  // No new alerts; watchers end their streams with OK.
  alert_engine.Stop();
  alert_hub.Close();
  server->Shutdown(std::chrono::system_clock::now() +
                   absl::ToChronoSeconds(absl::GetFlag(FLAGS_shutdown_grace)));
  server->Wait();
  // HTTP after gRPC has drained, so probes get answers (/readyz: 503) while
  // it drains; it finishes the requests it has.
  http_server.Stop();
  stopping.Notify();
  expirer.join();
  // Deliveries still queued or waiting to retry stay in the outbox.
  webhook_notifier.Stop();
  // Closes RocksDB after the last write (when all stores are gone).
  storage->policy_versions.reset();
  storage->alerts.reset();
  ledger.reset();
  storage->usage.reset();
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
      "Usage: bursard (--tls_cert=F --tls_key=F [--tls_client_ca=F] "
      "--tokens_file=F | --insecure) [--listen=127.0.0.1:8081] "
      "[--http_listen=127.0.0.1:8082] "
      "[--data_dir=./data] [--policy_dir=policies/example] "
      "[--policy_source=store|dir] [--sync=none|group|always]\n"
      "Security: TLS (mutual with --tls_client_ca) and bearer tokens per "
      "role; plaintext only with --insecure (see docs/security.md).\n"
      "Policies: the active policy version stored in --data_dir runs; "
      "--policy_dir only seeds an empty --data_dir (or runs with "
      "--policy_source=dir). Push new versions with `bursarctl policy "
      "push`.");
  absl::ParseCommandLine(argc, argv);
  return bursar::server::Run();
}
