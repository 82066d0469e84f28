#include "alerts/webhook_notifier.h"

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <pthread.h>

#include <algorithm>
#include <cstdlib>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/strip.h"
#include "httplib.h"
#include "yaml-cpp/yaml.h"

namespace bursar::alerts {
namespace {

constexpr int kMaxAttempts = 100;

std::string JsonString(absl::string_view text) {
  std::string out = "\"";
  for (unsigned char c : text) {
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      default:
        if (c < 0x20) {
          absl::StrAppendFormat(&out, "\\u%04x", c);
        } else {
          out.push_back(static_cast<char>(c));
        }
    }
  }
  out += "\"";
  return out;
}

std::string Rfc3339(absl::Time t) {
  if (t == absl::InfinitePast()) return "";
  return absl::FormatTime("%Y-%m-%dT%H:%M:%E*SZ", t, absl::UTCTimeZone());
}

int SeverityRank(absl::string_view severity) {
  if (severity == "critical") return 2;
  if (severity == "warning") return 1;
  return 0;
}

struct UrlParts {
  std::string scheme_host_port;  // "http://127.0.0.1:8080"
  std::string path;              // "/hook"
};

absl::StatusOr<UrlParts> SplitUrl(absl::string_view url) {
  const auto bad = [&](absl::string_view why) {
    return absl::InvalidArgumentError(
        absl::StrCat("webhook URL \"", absl::CHexEscape(url), "\" ", why,
                     "; expected http://host[:port]/path or "
                     "https://host[:port]/path"));
  };
  absl::string_view rest = url;
  std::string scheme;
  if (absl::ConsumePrefix(&rest, "http://")) {
    scheme = "http://";
  } else if (absl::ConsumePrefix(&rest, "https://")) {
    scheme = "https://";
  } else {
    return bad("has no http:// or https:// scheme");
  }
  const size_t slash = rest.find('/');
  const absl::string_view authority = rest.substr(0, slash);
  if (authority.empty() || authority.front() == ':') {
    return bad("has no host");
  }
  if (absl::StrContains(authority, "@")) {
    return bad("carries credentials (use secret for signatures)");
  }
  for (char c : authority) {
    if (!(absl::ascii_isalnum(c) || c == '.' || c == '-' || c == ':' ||
          c == '[' || c == ']' || c == '_')) {
      return bad("has a bad character in its host");
    }
  }
  if (const size_t colon = authority.rfind(':');
      colon != absl::string_view::npos && authority.back() != ']') {
    int port = 0;
    if (!absl::SimpleAtoi(authority.substr(colon + 1), &port) || port < 1 ||
        port > 65535) {
      return bad("has a bad port");
    }
  }
  UrlParts parts;
  parts.scheme_host_port = absl::StrCat(scheme, authority);
  parts.path =
      slash == absl::string_view::npos ? "/" : std::string(rest.substr(slash));
  for (char c : parts.path) {
    if (static_cast<unsigned char>(c) <= 0x20 || c == 0x7f) {
      return bad("has a space or control character in its path");
    }
  }
  return parts;
}

}  // namespace

absl::StatusOr<WebhookEndpoint> ParseWebhookUrl(absl::string_view url) {
  if (absl::Status s = SplitUrl(url).status(); !s.ok()) return s;
  WebhookEndpoint endpoint;
  endpoint.url = std::string(url);
  return endpoint;
}

absl::StatusOr<std::vector<WebhookEndpoint>> ParseWebhooksYaml(
    absl::string_view content, absl::string_view file_name) {
  YAML::Node root;
  try {
    root = YAML::Load(std::string(content));
  } catch (const YAML::Exception& e) {
    return absl::InvalidArgumentError(
        absl::StrCat(file_name, ": not valid YAML: ", e.what()));
  }
  if (!root.IsMap() || !root["webhooks"] || !root["webhooks"].IsSequence()) {
    return absl::InvalidArgumentError(
        absl::StrCat(file_name,
                     ": expected a mapping with a list `webhooks:` of "
                     "{ url, format, secret, timeout, max_attempts, ... }"));
  }
  for (auto it = root.begin(); it != root.end(); ++it) {
    if (it->first.Scalar() != "webhooks") {
      return absl::InvalidArgumentError(
          absl::StrCat(file_name, ": unknown key \"", it->first.Scalar(),
                       "\"; expected webhooks"));
    }
  }
  std::vector<WebhookEndpoint> endpoints;
  const YAML::Node list = root["webhooks"];
  for (size_t i = 0; i < list.size(); ++i) {
    const std::string where = absl::StrCat(file_name, ": webhooks[", i, "]");
    const YAML::Node item = list[i];
    if (!item.IsMap()) {
      return absl::InvalidArgumentError(
          absl::StrCat(where, ": expected a mapping with at least url"));
    }
    WebhookEndpoint endpoint;
    bool has_url = false;
    for (auto it = item.begin(); it != item.end(); ++it) {
      const std::string key = it->first.Scalar();
      const std::string field = absl::StrCat(where, ".", key);
      if (!it->second.IsScalar()) {
        return absl::InvalidArgumentError(
            absl::StrCat(field, ": expected a single value"));
      }
      const std::string value = it->second.Scalar();
      auto duration = [&](absl::Duration* out) -> absl::Status {
        absl::Duration d;
        if (!absl::ParseDuration(value, &d) || d <= absl::ZeroDuration()) {
          return absl::InvalidArgumentError(absl::StrCat(
              field,
              ": expected a positive duration such as 5s or 250ms, "
              "got \"",
              value, "\""));
        }
        *out = d;
        return absl::OkStatus();
      };
      absl::Status status;
      if (key == "url") {
        absl::StatusOr<WebhookEndpoint> parsed = ParseWebhookUrl(value);
        if (!parsed.ok()) {
          return absl::InvalidArgumentError(
              absl::StrCat(field, ": ", parsed.status().message()));
        }
        endpoint.url = value;
        has_url = true;
      } else if (key == "format") {
        if (value == "json") {
          endpoint.format = WebhookFormat::kJson;
        } else if (value == "slack") {
          endpoint.format = WebhookFormat::kSlack;
        } else {
          return absl::InvalidArgumentError(absl::StrCat(
              field, ": expected json or slack, got \"", value, "\""));
        }
      } else if (key == "secret") {
        endpoint.secret = value;
      } else if (key == "secret_env") {
        const char* secret = std::getenv(value.c_str());
        if (secret == nullptr || *secret == '\0') {
          return absl::InvalidArgumentError(
              absl::StrCat(field, ": the environment variable ", value,
                           " is not set or empty"));
        }
        endpoint.secret = secret;
      } else if (key == "timeout") {
        status = duration(&endpoint.timeout);
      } else if (key == "initial_backoff") {
        status = duration(&endpoint.initial_backoff);
      } else if (key == "max_backoff") {
        status = duration(&endpoint.max_backoff);
      } else if (key == "max_attempts") {
        int attempts = 0;
        if (!absl::SimpleAtoi(value, &attempts) || attempts < 1 ||
            attempts > kMaxAttempts) {
          return absl::InvalidArgumentError(
              absl::StrCat(field, ": expected a whole number from 1 to ",
                           kMaxAttempts, ", got \"", value, "\""));
        }
        endpoint.max_attempts = attempts;
      } else if (key == "min_severity") {
        if (value != "info" && value != "warning" && value != "critical") {
          return absl::InvalidArgumentError(absl::StrCat(
              field, ": expected info, warning or critical, got \"", value,
              "\""));
        }
        endpoint.min_severity = value;
      } else {
        return absl::InvalidArgumentError(absl::StrCat(
            field,
            ": unknown key; expected url, format, secret, secret_env, "
            "timeout, max_attempts, initial_backoff, max_backoff, "
            "min_severity"));
      }
      if (!status.ok()) return status;
    }
    if (!has_url) {
      return absl::InvalidArgumentError(
          absl::StrCat(where, ": missing required key url"));
    }
    endpoints.push_back(std::move(endpoint));
  }
  return endpoints;
}

std::string AlertJson(const storage::AlertEntry& alert) {
  return absl::StrCat(
      "{\"id\":", JsonString(alert.id), ",\"rule\":", JsonString(alert.rule),
      ",\"severity\":", JsonString(alert.severity),
      ",\"scope\":", JsonString(alert.scope),
      ",\"budget\":", JsonString(alert.budget),
      ",\"instance\":", JsonString(alert.instance),
      ",\"period_start\":", JsonString(Rfc3339(alert.period_start)),
      ",\"fired_at\":", JsonString(Rfc3339(alert.fired_at)),
      ",\"message\":", JsonString(alert.message),
      ",\"policy_version\":", JsonString(alert.policy_version), "}");
}

std::string SlackJson(const storage::AlertEntry& alert) {
  const absl::string_view color = alert.severity == "critical"  ? "danger"
                                  : alert.severity == "warning" ? "warning"
                                                                : "good";
  const std::string text =
      absl::StrCat("[", alert.severity, "] ", alert.rule, " on ", alert.scope,
                   ": ", alert.message);
  return absl::StrCat(
      "{\"text\":", JsonString(text),
      ",\"attachments\":[{\"color\":", JsonString(color), ",\"fields\":[",
      "{\"title\":\"rule\",\"value\":", JsonString(alert.rule),
      ",\"short\":true},",
      "{\"title\":\"scope\",\"value\":", JsonString(alert.scope),
      ",\"short\":true},", "{\"title\":\"period start\",\"value\":",
      JsonString(Rfc3339(alert.period_start)), ",\"short\":true},",
      "{\"title\":\"alert id\",\"value\":", JsonString(alert.id),
      ",\"short\":true}]}]}");
}

std::string HmacSha256Hex(absl::string_view secret, absl::string_view body) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int length = 0;
  HMAC(EVP_sha256(), secret.data(), static_cast<int>(secret.size()),
       reinterpret_cast<const unsigned char*>(body.data()), body.size(), digest,
       &length);
  return absl::BytesToHexString(
      absl::string_view(reinterpret_cast<const char*>(digest), length));
}

class WebhookNotifier::Worker {
 public:
  Worker(WebhookEndpoint endpoint, UrlParts url, storage::AlertStore* store,
         std::function<absl::Time()> clock, size_t capacity, bool outbox)
      : endpoint_(std::move(endpoint)),
        url_(std::move(url)),
        store_(store),
        clock_(std::move(clock)),
        capacity_(capacity),
        outbox_(outbox) {
    thread_ = std::thread([this] {
      pthread_setname_np(pthread_self(), "webhook-sender");
      Run();
    });
  }
  ~Worker() { Stop(); }

  const std::string& url() const { return endpoint_.url; }
  bool Accepts(const storage::AlertEntry& alert) const {
    return SeverityRank(alert.severity) >= SeverityRank(endpoint_.min_severity);
  }

  void Enqueue(const storage::AlertEntry& alert) {
    if (!Accepts(alert)) return;
    Item item{alert.id, endpoint_.format == WebhookFormat::kSlack
                            ? SlackJson(alert)
                            : AlertJson(alert)};
    {
      absl::MutexLock lock(&mu_);
      if (!stopping_ && queue_.size() < capacity_) {
        queue_.push_back(std::move(item));
        return;
      }
      // Stopping: the outbox keeps it for the next start.
      if (stopping_ && outbox_) return;
    }
    // Full or stopping: a dead letter now (a write to the store; the engine
    // thread pays for it, never Check).
    DeadLetter(item, 0, "the webhook queue is full or bursard is stopping");
  }

  void Stop() {
    {
      absl::MutexLock lock(&mu_);
      stopping_ = true;
    }
    if (thread_.joinable()) thread_.join();
  }

  bool WaitIdle(absl::Duration timeout) {
    absl::MutexLock lock(&mu_);
    auto idle = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return queue_.empty() && !busy_;
    };
    return mu_.AwaitWithTimeout(absl::Condition(&idle), timeout);
  }

  WebhookStats stats() const {
    absl::MutexLock lock(&mu_);
    return stats_;
  }

 private:
  struct Item {
    std::string alert_id;
    std::string body;
  };

  void Run() {
    while (true) {
      Item item;
      {
        absl::MutexLock lock(&mu_);
        auto ready = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
          return stopping_ || !queue_.empty();
        };
        mu_.Await(absl::Condition(&ready));
        if (stopping_) {
          std::deque<Item> left = std::move(queue_);
          queue_.clear();
          // The outbox keeps them for the next start.
          if (outbox_) return;
          mu_.Unlock();
          for (const Item& item : left) {
            DeadLetter(item, 0, "bursard stopped before delivery");
          }
          mu_.Lock();
          return;
        }
        item = std::move(queue_.front());
        queue_.pop_front();
        busy_ = true;
      }
      Deliver(item);
      absl::MutexLock lock(&mu_);
      busy_ = false;
    }
  }

  void Deliver(const Item& item) {
    absl::Duration backoff = endpoint_.initial_backoff;
    std::string error;
    int attempt = 1;
    for (;; ++attempt) {
      bool permanent = false;
      error = Post(item, attempt, &permanent);
      {
        absl::MutexLock lock(&mu_);
        ++stats_.attempts;
        if (error.empty()) ++stats_.delivered;
      }
      if (error.empty()) {
        if (outbox_) {
          // A failure leaves the delivery pending: it is sent again after a
          // restart (at least once, never lost).
          store_->FinishDelivery(item.alert_id, endpoint_.url, nullptr)
              .IgnoreError();
        }
        return;
      }
      if (permanent || attempt >= endpoint_.max_attempts) break;
      // Waits for the backoff, unless bursard stops.
      absl::MutexLock lock(&mu_);
      if (mu_.AwaitWithTimeout(absl::Condition(&stopping_), backoff)) {
        // The outbox keeps it for the next start.
        if (outbox_) return;
        error = absl::StrCat(error, "; bursard stopped before the next try");
        break;
      }
      backoff = std::min(backoff * 2, endpoint_.max_backoff);
      ++stats_.retries;
    }
    DeadLetter(item, attempt, error);
  }

  // "" when the endpoint accepted the body (2xx); otherwise what went wrong,
  // and whether trying again cannot help (a 4xx other than 408 and 429).
  std::string Post(const Item& item, int attempt, bool* permanent) {
    httplib::Client client(url_.scheme_host_port);
    const int64_t timeout_us = absl::ToInt64Microseconds(endpoint_.timeout);
    client.set_connection_timeout(timeout_us / 1'000'000,
                                  timeout_us % 1'000'000);
    client.set_read_timeout(timeout_us / 1'000'000, timeout_us % 1'000'000);
    client.set_write_timeout(timeout_us / 1'000'000, timeout_us % 1'000'000);
    httplib::Headers headers = {
        {"User-Agent", "bursar-alerts/1"},
        {"X-Bursar-Alert-Id", item.alert_id},
        {"X-Bursar-Delivery-Attempt", absl::StrCat(attempt)},
    };
    if (!endpoint_.secret.empty()) {
      headers.emplace(
          "X-Bursar-Signature",
          absl::StrCat("sha256=", HmacSha256Hex(endpoint_.secret, item.body)));
    }
    httplib::Result result =
        client.Post(url_.path, headers, item.body, "application/json");
    if (!result) {
      return absl::StrCat("POST ", endpoint_.url, ": ",
                          httplib::to_string(result.error()));
    }
    const int status = result->status;
    if (status >= 200 && status < 300) return "";
    *permanent =
        status >= 400 && status < 500 && status != 408 && status != 429;
    return absl::StrCat("POST ", endpoint_.url, ": HTTP ", status);
  }

  void DeadLetter(const Item& item, int attempts, const std::string& error) {
    storage::DeadLetter letter;
    letter.alert_id = item.alert_id;
    letter.url = endpoint_.url;
    letter.attempts = attempts;
    letter.last_error = error;
    letter.failed_at = clock_();
    letter.body = item.body;
    // Nothing better to do with a failure to record it than to count it.
    const absl::Status stored =
        outbox_ ? store_->FinishDelivery(item.alert_id, endpoint_.url, &letter)
                : store_->PutDeadLetter(letter);
    absl::MutexLock lock(&mu_);
    if (stored.ok()) ++stats_.dead_letters;
  }

  const WebhookEndpoint endpoint_;
  const UrlParts url_;
  storage::AlertStore* const store_;
  const std::function<absl::Time()> clock_;
  const size_t capacity_;
  const bool outbox_;
  mutable absl::Mutex mu_;
  std::deque<Item> queue_ ABSL_GUARDED_BY(mu_);
  bool busy_ ABSL_GUARDED_BY(mu_) = false;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  WebhookStats stats_ ABSL_GUARDED_BY(mu_);
  std::thread thread_;
};

WebhookNotifier::WebhookNotifier(std::vector<WebhookEndpoint> endpoints,
                                 storage::AlertStore* dead_letters,
                                 std::function<absl::Time()> clock,
                                 size_t queue_capacity, bool outbox)
    : store_(dead_letters), clock_(clock) {
  for (WebhookEndpoint& endpoint : endpoints) {
    absl::StatusOr<UrlParts> url = SplitUrl(endpoint.url);
    if (!url.ok()) continue;  // the parsers let no bad URL through
    workers_.push_back(std::make_unique<Worker>(std::move(endpoint), *url,
                                                dead_letters, clock,
                                                queue_capacity, outbox));
  }
}

std::vector<std::string> WebhookNotifier::Destinations(
    const storage::AlertEntry& alert) const {
  std::vector<std::string> urls;
  for (const auto& worker : workers_) {
    if (worker->Accepts(alert) &&
        std::find(urls.begin(), urls.end(), worker->url()) == urls.end()) {
      urls.push_back(worker->url());
    }
  }
  return urls;
}

absl::StatusOr<int> WebhookNotifier::ResendPending() {
  absl::StatusOr<std::vector<storage::PendingDelivery>> pending =
      store_->ListPendingDeliveries();
  if (!pending.ok()) return pending.status();
  int queued = 0;
  for (const storage::PendingDelivery& p : *pending) {
    Worker* to = nullptr;
    for (auto& worker : workers_) {
      if (worker->url() == p.url) to = worker.get();
    }
    if (to != nullptr) {
      to->Enqueue(p.alert);
      ++queued;
      continue;
    }
    storage::DeadLetter letter;
    letter.alert_id = p.alert.id;
    letter.url = p.url;
    letter.last_error =
        "the webhook is no longer configured (--alert_webhook, "
        "--alert_webhooks_file)";
    letter.failed_at = clock_();
    letter.body = AlertJson(p.alert);
    if (absl::Status s = store_->FinishDelivery(p.alert.id, p.url, &letter);
        !s.ok()) {
      return s;
    }
  }
  return queued;
}

WebhookNotifier::~WebhookNotifier() { Stop(); }

void WebhookNotifier::OnAlert(const storage::AlertEntry& alert) {
  for (auto& worker : workers_) worker->Enqueue(alert);
}

void WebhookNotifier::Stop() {
  for (auto& worker : workers_) worker->Stop();
}

bool WebhookNotifier::WaitIdle(absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  for (auto& worker : workers_) {
    if (!worker->WaitIdle(
            std::max(absl::ZeroDuration(), deadline - absl::Now()))) {
      return false;
    }
  }
  return true;
}

WebhookStats WebhookNotifier::stats() const {
  WebhookStats total;
  for (const auto& worker : workers_) {
    const WebhookStats s = worker->stats();
    total.delivered += s.delivered;
    total.attempts += s.attempts;
    total.dead_letters += s.dead_letters;
    total.retries += s.retries;
  }
  return total;
}

}  // namespace bursar::alerts
