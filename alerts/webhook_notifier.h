#ifndef BURSAR_ALERTS_WEBHOOK_NOTIFIER_H_
#define BURSAR_ALERTS_WEBHOOK_NOTIFIER_H_

// POSTs fired alerts to webhooks (docs/alerts.md): a JSON body (Bursar's own
// or a Slack-compatible one), signed with HMAC-SHA256 when the endpoint has
// a secret (`X-Bursar-Signature: sha256=<hex of HMAC(secret, body)>`),
// retried with exponential backoff, and recorded as a dead letter in the
// AlertStore after the last try. Each endpoint has its own thread and a
// bounded queue, so a slow or dead endpoint delays only itself; OnAlert
// never blocks. http:// and https:// (cpp-httplib with OpenSSL, verifying
// the server's certificate against the system's CAs) are supported.

#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "alerts/alert_engine.h"
#include "storage/alert_store.h"

namespace bursar::alerts {

enum class WebhookFormat {
  kJson,   // {"id", "rule", "severity", "scope", ...} (docs/alerts.md)
  kSlack,  // {"text": ..., "attachments": [...]} for Slack incoming webhooks
};

struct WebhookEndpoint {
  std::string url;  // http://host[:port]/path or https://...
  WebhookFormat format = WebhookFormat::kJson;
  // HMAC-SHA256 key of the signature header; empty: no signature.
  std::string secret;
  // Of each try (connect, send, receive).
  absl::Duration timeout = absl::Seconds(5);
  int max_attempts = 5;
  // Before the second try; doubled before each next one, up to max_backoff.
  absl::Duration initial_backoff = absl::Seconds(1);
  absl::Duration max_backoff = absl::Minutes(1);
  // Only alerts at least this severe (info < warning < critical).
  std::string min_severity = "info";
};

// A URL from --alert_webhook: the defaults above, JSON format.
// InvalidArgument for anything but http(s)://host[:port][/path].
absl::StatusOr<WebhookEndpoint> ParseWebhookUrl(absl::string_view url);

// The YAML file of --alert_webhooks_file:
//   webhooks:
//     - url: https://hooks.slack.com/services/T000/B000/XXXX
//       format: slack            # json (default) | slack
//       secret_env: BURSAR_HOOK_SECRET   # or secret: "..."
//       timeout: 5s
//       max_attempts: 5
//       initial_backoff: 1s
//       max_backoff: 1m
//       min_severity: warning
// InvalidArgument naming the entry and field for any mistake (unknown keys
// included).
absl::StatusOr<std::vector<WebhookEndpoint>> ParseWebhooksYaml(
    absl::string_view content, absl::string_view file_name);

// The bodies POSTed.
std::string AlertJson(const storage::AlertEntry& alert);
std::string SlackJson(const storage::AlertEntry& alert);
// 64 lowercase hex digits of HMAC-SHA256(secret, body).
std::string HmacSha256Hex(absl::string_view secret, absl::string_view body);

struct WebhookStats {
  int64_t delivered = 0;
  int64_t attempts = 0;
  int64_t dead_letters = 0;
  // Failed attempts followed by another try.
  int64_t retries = 0;
};

// The outbox (with `outbox` true; bursard's way): the alert engine stores
// one pending delivery per Destinations() URL with the alert
// (AlertEngineOptions::outbox, one write), the notifier removes it once the
// endpoint accepted it or it became a dead letter, and ResendPending queues
// whatever a crash or a stop left pending. A delivery is then never lost;
// one that was accepted just before a crash may be sent twice (the
// X-Bursar-Alert-Id header lets a receiver drop the repeat).
class WebhookNotifier final : public AlertListener {
 public:
  // `dead_letters` (the store of dead letters and, with `outbox`, of
  // pending deliveries) must outlive the notifier. Threads start at once.
  WebhookNotifier(std::vector<WebhookEndpoint> endpoints,
                  storage::AlertStore* dead_letters,
                  std::function<absl::Time()> clock,
                  size_t queue_capacity = 1000, bool outbox = false);
  // Stop().
  ~WebhookNotifier() override;

  // Queues the alert for every endpoint whose min_severity it meets. Never
  // blocks; a full queue dead-letters the alert at once.
  void OnAlert(const storage::AlertEntry& alert) override;

  // The URLs `alert` is delivered to (the endpoints whose min_severity it
  // meets), for the outbox.
  std::vector<std::string> Destinations(const storage::AlertEntry& alert) const;

  // Queues every pending delivery in the store to the endpoint with its
  // URL; one whose URL is no longer configured becomes a dead letter.
  // Returns how many were queued. Call once at start-up, before the engine
  // fires anything.
  absl::StatusOr<int> ResendPending();

  // Stops retrying and joins the threads. Whatever is still queued or
  // waiting for a retry stays pending with the outbox, and becomes a dead
  // letter ("bursard stopped") without it.
  void Stop();

  // True once every queue is empty and no delivery is in flight, waiting at
  // most `timeout`. For tests and shutdown.
  bool WaitIdle(absl::Duration timeout);

  WebhookStats stats() const;

 private:
  class Worker;
  storage::AlertStore* const store_;
  const std::function<absl::Time()> clock_;
  std::vector<std::unique_ptr<Worker>> workers_;
};

}  // namespace bursar::alerts

#endif  // BURSAR_ALERTS_WEBHOOK_NOTIFIER_H_
