// Webhook delivery against a local HTTP server: the body, the HMAC
// signature (checked here with OpenSSL directly), retries until a flaky
// endpoint accepts, and a dead letter for one that never does.

#include "alerts/webhook_notifier.h"

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <algorithm>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "httplib.h"
#include "storage/rocks_storage.h"
#include "tests/support/temp_dir.h"

namespace bursar::alerts {
namespace {

using ::bursar::testing::TempDir;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::SizeIs;

std::string ExpectedSignature(const std::string& secret,
                              const std::string& body) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int length = 0;
  HMAC(EVP_sha256(), secret.data(), static_cast<int>(secret.size()),
       reinterpret_cast<const unsigned char*>(body.data()), body.size(), digest,
       &length);
  return "sha256=" + absl::BytesToHexString(absl::string_view(
                         reinterpret_cast<const char*>(digest), length));
}

struct Received {
  std::string path;
  std::string body;
  std::string signature;
  std::string attempt;
};

// An HTTP server on 127.0.0.1 and a free port: /ok accepts, /flaky fails
// twice with 500 and then accepts, /down always answers 503, /gone 410,
// /later answers 503 until SetLaterUp().
class HookServer {
 public:
  HookServer() {
    auto record = [this](const httplib::Request& req) {
      absl::MutexLock lock(&mu_);
      received_.push_back({req.path, req.body,
                           req.get_header_value("X-Bursar-Signature"),
                           req.get_header_value("X-Bursar-Delivery-Attempt")});
    };
    server_.Post("/ok",
                 [=](const httplib::Request& req, httplib::Response& res) {
                   record(req);
                   res.status = 200;
                 });
    server_.Post("/flaky",
                 [=](const httplib::Request& req, httplib::Response& res) {
                   record(req);
                   absl::MutexLock lock(&mu_);
                   res.status = ++flaky_calls_ <= 2 ? 500 : 204;
                 });
    server_.Post("/down",
                 [=](const httplib::Request& req, httplib::Response& res) {
                   record(req);
                   res.status = 503;
                 });
    server_.Post("/gone",
                 [=](const httplib::Request& req, httplib::Response& res) {
                   record(req);
                   res.status = 410;
                 });
    server_.Post("/later",
                 [=](const httplib::Request& req, httplib::Response& res) {
                   record(req);
                   absl::MutexLock lock(&mu_);
                   res.status = later_up_ ? 200 : 503;
                 });
    port_ = server_.bind_to_any_port("127.0.0.1");
    thread_ = std::thread([this] { server_.listen_after_bind(); });
  }
  ~HookServer() {
    server_.stop();
    thread_.join();
  }
  std::string Url(const std::string& path) const {
    return "http://127.0.0.1:" + std::to_string(port_) + path;
  }
  std::vector<Received> received() const {
    absl::MutexLock lock(&mu_);
    return received_;
  }
  void SetLaterUp() {
    absl::MutexLock lock(&mu_);
    later_up_ = true;
  }
  // Waits (at most a minute) until `path` got `n` requests.
  bool AwaitRequests(const std::string& path, size_t n) const {
    absl::MutexLock lock(&mu_);
    auto enough = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      size_t seen = 0;
      for (const Received& r : received_) seen += r.path == path;
      return seen >= n;
    };
    return mu_.AwaitWithTimeout(absl::Condition(&enough), absl::Minutes(1));
  }

 private:
  httplib::Server server_;
  int port_ = 0;
  std::thread thread_;
  mutable absl::Mutex mu_;
  std::vector<Received> received_ ABSL_GUARDED_BY(mu_);
  int flaky_calls_ ABSL_GUARDED_BY(mu_) = 0;
  bool later_up_ ABSL_GUARDED_BY(mu_) = false;
};

storage::AlertEntry Alert() {
  storage::AlertEntry alert;
  alert.id = "al-00000000000000010000000000000001";
  alert.rule = "budget-threshold-85";
  alert.scope = "budget:team \"search\"";
  alert.severity = "warning";
  alert.message = "spent $86.00 of $100.00\nthis day";
  alert.budget = "team";
  alert.period_start = absl::FromUnixSeconds(1'780'000'000);
  alert.fired_at = absl::FromUnixSeconds(1'780'003'600);
  return alert;
}

class WebhookNotifierTest : public ::testing::Test {
 protected:
  void SetUp() override { Open(); }

  // Opens the database again, as a restarted bursard does.
  void Open() {
    storage_ = storage::RocksStorage();
    storage::RocksLedgerOptions options;
    options.path = dir_.Sub("db");
    options.sync = storage::SyncMode::kNone;
    absl::StatusOr<storage::RocksStorage> opened =
        storage::OpenRocksStorage(options);
    ASSERT_TRUE(opened.ok()) << opened.status();
    storage_ = *std::move(opened);
  }

  WebhookEndpoint Endpoint(const std::string& path) {
    WebhookEndpoint endpoint;
    endpoint.url = server_.Url(path);
    endpoint.max_attempts = 3;
    endpoint.initial_backoff = absl::Milliseconds(1);
    endpoint.timeout = absl::Seconds(10);
    return endpoint;
  }

  std::vector<Received> To(const std::string& path) {
    std::vector<Received> out;
    for (const Received& r : server_.received()) {
      if (r.path == path) out.push_back(r);
    }
    return out;
  }

  TempDir dir_;
  storage::RocksStorage storage_;
  HookServer server_;
  std::function<absl::Time()> clock_ = [] {
    return absl::FromUnixSeconds(1'780'007'200);
  };
};

TEST_F(WebhookNotifierTest, DeliversSignedJson) {
  WebhookEndpoint endpoint = Endpoint("/ok");
  endpoint.secret = "s3cret";
  WebhookNotifier notifier({endpoint}, storage_.alerts.get(), clock_);
  notifier.OnAlert(Alert());
  ASSERT_TRUE(notifier.WaitIdle(absl::Seconds(60)));
  const std::vector<Received> got = To("/ok");
  ASSERT_THAT(got, SizeIs(1));
  EXPECT_EQ(got[0].body, AlertJson(Alert()));
  EXPECT_THAT(got[0].body,
              HasSubstr("\"scope\":\"budget:team \\\"search\\\"\""));
  EXPECT_THAT(got[0].body,
              HasSubstr("\"message\":\"spent $86.00 of $100.00\\nthis day\""));
  EXPECT_THAT(got[0].body, HasSubstr("\"fired_at\":\"2026-05-28T"));
  EXPECT_EQ(got[0].signature, ExpectedSignature("s3cret", got[0].body));
  EXPECT_NE(got[0].signature, ExpectedSignature("other", got[0].body));
  EXPECT_EQ(notifier.stats().delivered, 1);
}

TEST_F(WebhookNotifierTest, RetriesUntilAFlakyEndpointAccepts) {
  WebhookEndpoint endpoint = Endpoint("/flaky");
  endpoint.format = WebhookFormat::kSlack;
  WebhookNotifier notifier({endpoint}, storage_.alerts.get(), clock_);
  notifier.OnAlert(Alert());
  ASSERT_TRUE(notifier.WaitIdle(absl::Seconds(60)));
  const std::vector<Received> got = To("/flaky");
  ASSERT_THAT(got, SizeIs(3));
  EXPECT_EQ(got[0].attempt, "1");
  EXPECT_EQ(got[2].attempt, "3");
  EXPECT_EQ(got[2].body, got[0].body);
  EXPECT_THAT(got[2].body,
              HasSubstr("\"text\":\"[warning] budget-threshold-85"));
  EXPECT_EQ(got[2].signature, "");  // no secret, no signature
  EXPECT_EQ(notifier.stats().delivered, 1);
  EXPECT_EQ(notifier.stats().retries, 2);
  EXPECT_THAT(storage_.alerts->ListDeadLetters(10).value(), SizeIs(0));
}

TEST_F(WebhookNotifierTest, DeadLettersAfterTheLastTry) {
  WebhookNotifier notifier({Endpoint("/down"), Endpoint("/gone")},
                           storage_.alerts.get(), clock_);
  notifier.OnAlert(Alert());
  ASSERT_TRUE(notifier.WaitIdle(absl::Seconds(60)));
  EXPECT_THAT(To("/down"), SizeIs(3));
  // A 4xx other than 408/429 is not retried.
  EXPECT_THAT(To("/gone"), SizeIs(1));
  std::vector<storage::DeadLetter> letters =
      storage_.alerts->ListDeadLetters(10).value();
  ASSERT_THAT(letters, SizeIs(2));
  std::sort(letters.begin(), letters.end(),
            [](const auto& a, const auto& b) { return a.url < b.url; });
  EXPECT_EQ(letters[0].url, server_.Url("/down"));
  EXPECT_EQ(letters[0].attempts, 3);
  EXPECT_THAT(letters[0].last_error, HasSubstr("HTTP 503"));
  EXPECT_EQ(letters[0].alert_id, Alert().id);
  EXPECT_EQ(letters[0].body, AlertJson(Alert()));
  EXPECT_EQ(letters[0].failed_at, clock_());
  EXPECT_EQ(letters[1].attempts, 1);
  EXPECT_THAT(letters[1].last_error, HasSubstr("HTTP 410"));
  EXPECT_EQ(notifier.stats().dead_letters, 2);
  // /down was tried again twice; /gone never.
  EXPECT_EQ(notifier.stats().retries, 2);
}

TEST_F(WebhookNotifierTest, FiltersBySeverity) {
  WebhookEndpoint endpoint = Endpoint("/ok");
  endpoint.min_severity = "critical";
  WebhookNotifier notifier({endpoint}, storage_.alerts.get(), clock_);
  notifier.OnAlert(Alert());
  storage::AlertEntry critical = Alert();
  critical.severity = "critical";
  notifier.OnAlert(critical);
  ASSERT_TRUE(notifier.WaitIdle(absl::Seconds(60)));
  ASSERT_THAT(To("/ok"), SizeIs(1));
  EXPECT_THAT(To("/ok")[0].body, HasSubstr("\"severity\":\"critical\""));
}

std::vector<std::string> PendingUrls(const storage::AlertStore& store) {
  std::vector<std::string> urls;
  const std::vector<storage::PendingDelivery> pending =
      store.ListPendingDeliveries().value();
  for (const storage::PendingDelivery& p : pending) {
    urls.push_back(absl::StrCat(p.alert.id, " ", p.url));
  }
  return urls;
}

// bursard dies after storing an alert and before sending it: the outbox
// sends it at the next start, exactly once, and forgets it once accepted.
TEST_F(WebhookNotifierTest, OutboxSendsWhatACrashLeftExactlyOnce) {
  const WebhookEndpoint endpoint = Endpoint("/later");
  storage::AlertEntry alert = Alert();
  {
    WebhookNotifier notifier({endpoint}, storage_.alerts.get(), clock_, 1000,
                             /*outbox=*/true);
    ASSERT_TRUE(
        storage_.alerts->Fire(&alert, notifier.Destinations(alert)).value());
    // ... and the process dies before OnAlert.
  }
  EXPECT_THAT(PendingUrls(*storage_.alerts),
              ElementsAre(alert.id + " " + endpoint.url));
  Open();
  server_.SetLaterUp();
  {
    WebhookNotifier notifier({endpoint}, storage_.alerts.get(), clock_, 1000,
                             /*outbox=*/true);
    EXPECT_EQ(notifier.ResendPending().value(), 1);
    ASSERT_TRUE(notifier.WaitIdle(absl::Seconds(60)));
    EXPECT_EQ(notifier.stats().delivered, 1);
  }
  EXPECT_THAT(PendingUrls(*storage_.alerts), IsEmpty());
  Open();
  {
    WebhookNotifier notifier({endpoint}, storage_.alerts.get(), clock_, 1000,
                             /*outbox=*/true);
    EXPECT_EQ(notifier.ResendPending().value(), 0);
    ASSERT_TRUE(notifier.WaitIdle(absl::Seconds(60)));
  }
  const std::vector<Received> got = To("/later");
  ASSERT_THAT(got, SizeIs(1));
  EXPECT_EQ(got[0].body, AlertJson(alert));
  EXPECT_THAT(storage_.alerts->ListDeadLetters(10).value(), IsEmpty());
}

// bursard stops while the webhook is down: the delivery stays pending (no
// dead letter) and goes out once after the restart, when the webhook is up.
TEST_F(WebhookNotifierTest, OutboxKeepsADeliveryWaitingForARetryAcrossStop) {
  WebhookEndpoint endpoint = Endpoint("/later");
  endpoint.max_attempts = 10;
  endpoint.initial_backoff = absl::Hours(1);
  storage::AlertEntry alert = Alert();
  {
    WebhookNotifier notifier({endpoint}, storage_.alerts.get(), clock_, 1000,
                             /*outbox=*/true);
    ASSERT_TRUE(
        storage_.alerts->Fire(&alert, notifier.Destinations(alert)).value());
    notifier.OnAlert(alert);
    ASSERT_TRUE(server_.AwaitRequests("/later", 1));
    notifier.Stop();  // during the backoff
  }
  EXPECT_THAT(storage_.alerts->ListDeadLetters(10).value(), IsEmpty());
  EXPECT_THAT(PendingUrls(*storage_.alerts), SizeIs(1));
  Open();
  server_.SetLaterUp();
  WebhookNotifier notifier({endpoint}, storage_.alerts.get(), clock_, 1000,
                           /*outbox=*/true);
  EXPECT_EQ(notifier.ResendPending().value(), 1);
  ASSERT_TRUE(notifier.WaitIdle(absl::Seconds(60)));
  const std::vector<Received> got = To("/later");
  ASSERT_THAT(got, SizeIs(2));  // the failed try before the stop, and this
  EXPECT_EQ(got[1].body, got[0].body);
  EXPECT_EQ(notifier.stats().delivered, 1);
  EXPECT_THAT(PendingUrls(*storage_.alerts), IsEmpty());
}

// A delivery that fails for good leaves the outbox as a dead letter, in one
// write; one for a webhook no longer configured too.
TEST_F(WebhookNotifierTest, OutboxDeadLettersLeaveTheOutbox) {
  storage::AlertEntry alert = Alert();
  const WebhookEndpoint down = Endpoint("/down");
  ASSERT_TRUE(
      storage_.alerts
          ->Fire(&alert, {down.url, std::string("http://127.0.0.1:1/x")})
          .value());
  WebhookNotifier notifier({down}, storage_.alerts.get(), clock_, 1000,
                           /*outbox=*/true);
  EXPECT_EQ(notifier.ResendPending().value(), 1);
  ASSERT_TRUE(notifier.WaitIdle(absl::Seconds(60)));
  EXPECT_THAT(PendingUrls(*storage_.alerts), IsEmpty());
  std::vector<storage::DeadLetter> letters =
      storage_.alerts->ListDeadLetters(10).value();
  ASSERT_THAT(letters, SizeIs(2));
  std::sort(letters.begin(), letters.end(),
            [](const auto& a, const auto& b) { return a.url < b.url; });
  EXPECT_THAT(letters[0].last_error, HasSubstr("no longer configured"));
  EXPECT_EQ(letters[1].url, down.url);
  EXPECT_EQ(letters[1].attempts, 3);
}

TEST(WebhookConfigTest, ParsesUrlsAndYaml) {
  EXPECT_TRUE(ParseWebhookUrl("http://127.0.0.1:9000/hook").ok());
  EXPECT_TRUE(ParseWebhookUrl("https://hooks.slack.com/services/T/B/X").ok());
  EXPECT_THAT(ParseWebhookUrl("ftp://x/y").status().message(),
              HasSubstr("has no http:// or https:// scheme"));
  EXPECT_THAT(ParseWebhookUrl("http://:80/").status().message(),
              HasSubstr("has no host"));
  EXPECT_THAT(ParseWebhookUrl("http://h:99999/").status().message(),
              HasSubstr("bad port"));

  absl::StatusOr<std::vector<WebhookEndpoint>> parsed = ParseWebhooksYaml(
      "webhooks:\n"
      "  - url: https://hooks.example.com/a\n"
      "    format: slack\n"
      "    secret: abc\n"
      "    timeout: 2s\n"
      "    max_attempts: 7\n"
      "    initial_backoff: 250ms\n"
      "    min_severity: warning\n"
      "  - url: http://127.0.0.1:1/b\n",
      "hooks.yaml");
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  ASSERT_THAT(*parsed, SizeIs(2));
  EXPECT_EQ((*parsed)[0].format, WebhookFormat::kSlack);
  EXPECT_EQ((*parsed)[0].secret, "abc");
  EXPECT_EQ((*parsed)[0].timeout, absl::Seconds(2));
  EXPECT_EQ((*parsed)[0].max_attempts, 7);
  EXPECT_EQ((*parsed)[0].initial_backoff, absl::Milliseconds(250));
  EXPECT_EQ((*parsed)[0].min_severity, "warning");
  EXPECT_EQ((*parsed)[1].format, WebhookFormat::kJson);

  EXPECT_THAT(
      ParseWebhooksYaml("webhooks:\n  - url: http://h/x\n    retries: 3\n",
                        "hooks.yaml")
          .status()
          .message(),
      HasSubstr("hooks.yaml: webhooks[0].retries: unknown key"));
  EXPECT_THAT(ParseWebhooksYaml("webhooks:\n  - format: json\n", "hooks.yaml")
                  .status()
                  .message(),
              HasSubstr("webhooks[0]: missing required key url"));
  EXPECT_THAT(ParseWebhooksYaml("webhooks:\n  - url: http://h/x\n    "
                                "timeout: soon\n",
                                "hooks.yaml")
                  .status()
                  .message(),
              HasSubstr("webhooks[0].timeout: expected a positive duration"));
}

}  // namespace
}  // namespace bursar::alerts
