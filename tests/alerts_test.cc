// Alerts on a real bursard (docs/alerts.md): budget thresholds fire once at
// 85% and once at 100%, across a restart in between, never again in the
// same period, and again in the next; WatchAlerts streams a fired alert; a
// configured webhook receives it signed.
//
// The server's time comes from --testing_clock_file. The engine runs every
// 100 ms and after Reports; the tests wait on ListAlerts' count of
// completed evaluation passes, not on time, to know a pass has seen a
// change (a pass that started after the change has completed once the count
// has grown by two).

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "httplib.h"
#include "tests/bursard_process.h"

namespace bursar::testing {
namespace {

using ::testing::HasSubstr;

// gpt-4.1, 1,000 in / 500 out: 1,000 × 2,000 + 500 × 8,000 nanos.
constexpr int64_t kCallNanos = 6'000'000;
// Ten calls a day.
constexpr int64_t kAmountNanos = 10 * kCallNanos;
// How long to wait for something that must happen (a generous bound, not a
// timing assumption).
constexpr absl::Duration kPatience = absl::Seconds(60);

class AlertsTest : public ::testing::Test {
 protected:
  void StartAt(absl::Time start, std::vector<std::string> flags = {}) {
    clock_ = std::make_unique<ClockFile>(dir_.Sub("clock"), start);
    BursardOptions options;
    options.data_dir = dir_.Sub("data");
    options.clock_file = clock_->path();
    options.extra_flags = {"--alert_interval=100ms", "--alert_min_gap=0s"};
    for (std::string& f : flags) options.extra_flags.push_back(std::move(f));
    server_ = std::make_unique<BursardProcess>(options, dir_.path());
    ASSERT_TRUE(server_->Start());
  }

  void SetDailyBudget() {
    v1::SetBudgetRequest request;
    *request.mutable_budget() =
        MakeBudget("team-daily", {}, v1::PERIOD_DAY, kAmountNanos);
    v1::SetBudgetResponse response;
    BURSAR_ASSERT_OK(server_->SetBudget(request, &response));
  }

  void SpendCalls(int calls) {
    for (int i = 0; i < calls; ++i) {
      v1::CheckResponse check;
      BURSAR_ASSERT_OK(
          server_->Check(MakeCheck("gpt-4.1", 1'000, 500), &check));
      ASSERT_EQ(check.verdict(), v1::VERDICT_ALLOW);
      v1::ReportResponse report;
      BURSAR_ASSERT_OK(server_->Report(
          MakeReport(check.reservation_id(), 1'000, 0, 500), &report));
      ASSERT_EQ(report.cost_nanos(), kCallNanos);
    }
  }

  v1::ListAlertsResponse List(bool dead_letters = false) {
    auto context = Call();
    v1::ListAlertsRequest request;
    request.set_limit(1000);
    request.set_include_dead_letters(dead_letters);
    v1::ListAlertsResponse response;
    BURSAR_EXPECT_OK(
        server_->admin().ListAlerts(context.get(), request, &response));
    return response;
  }

  // Waits until an evaluation pass that started after this call has
  // completed.
  void AwaitFreshPass() {
    const int64_t seen = List().evaluations();
    const absl::Time deadline = absl::Now() + kPatience;
    while (List().evaluations() < seen + 2) {
      ASSERT_LT(absl::Now(), deadline) << "the alert engine made no pass";
      absl::SleepFor(absl::Milliseconds(20));
    }
  }

  // The newest stored alert of `rule` (empty if none).
  v1::Alert Find(const std::string& rule) {
    const v1::ListAlertsResponse listed = List();
    for (const v1::Alert& alert : listed.alerts()) {
      if (alert.rule() == rule) return alert;
    }
    ADD_FAILURE() << "no alert " << rule;
    return v1::Alert();
  }

  // The stored alerts of `rule` as "rule@period_start".
  std::vector<std::string> Fired(const std::string& rule) {
    std::vector<std::string> out;
    const v1::ListAlertsResponse listed = List();
    for (const v1::Alert& alert : listed.alerts()) {
      if (alert.rule() == rule) {
        out.push_back(absl::StrCat(alert.rule(), "@", alert.period_start()));
      }
    }
    return out;
  }

  TempDir dir_;
  std::unique_ptr<ClockFile> clock_;
  std::unique_ptr<BursardProcess> server_;
};

TEST_F(AlertsTest, ThresholdsFireOnceAcrossARestartAndRearmNextPeriod) {
  const absl::Time day1 = Utc(2026, 4, 14);
  StartAt(day1 + absl::Hours(20));
  SetDailyBudget();
  SpendCalls(8);  // 80%
  AwaitFreshPass();
  EXPECT_THAT(Fired("budget-threshold-85"), ::testing::IsEmpty());

  SpendCalls(1);  // 90%
  AwaitFreshPass();
  const std::string day1_85 = "budget-threshold-85@2026-04-14T00:00:00+00:00";
  EXPECT_THAT(Fired("budget-threshold-85"), ::testing::ElementsAre(day1_85));
  EXPECT_THAT(Fired("budget-threshold-100"), ::testing::IsEmpty());
  const v1::Alert first = Find("budget-threshold-85");
  EXPECT_EQ(first.scope(), "budget:team-daily");
  EXPECT_EQ(first.severity(), "warning");
  EXPECT_EQ(first.budget(), "team-daily");
  EXPECT_THAT(first.message(), HasSubstr("(90%) this day"));

  // A restart fires nothing again.
  ASSERT_EQ(server_->Terminate(), 0);
  ASSERT_TRUE(server_->Start());
  AwaitFreshPass();
  EXPECT_THAT(Fired("budget-threshold-85"), ::testing::ElementsAre(day1_85));

  SpendCalls(1);  // 100%
  AwaitFreshPass();
  const std::string day1_100 = "budget-threshold-100@2026-04-14T00:00:00+00:00";
  EXPECT_THAT(Fired("budget-threshold-100"), ::testing::ElementsAre(day1_100));
  EXPECT_EQ(Find("budget-threshold-100").severity(), "critical");
  clock_->Advance(absl::Hours(1));
  AwaitFreshPass();
  EXPECT_THAT(Fired("budget-threshold-85"), ::testing::ElementsAre(day1_85));
  EXPECT_THAT(Fired("budget-threshold-100"), ::testing::ElementsAre(day1_100));

  // The next day re-arms.
  clock_->Set(day1 + absl::Hours(24 + 20));
  SpendCalls(9);
  AwaitFreshPass();
  EXPECT_THAT(Fired("budget-threshold-85"),
              ::testing::ElementsAre(
                  "budget-threshold-85@2026-04-15T00:00:00+00:00", day1_85));
  EXPECT_THAT(Fired("budget-threshold-100"), ::testing::ElementsAre(day1_100));

  // bursarctl shows them.
  const CliRun cli =
      RunBursarctl(BURSARCTL_PATH, server_->address(), "alerts list");
  EXPECT_EQ(cli.exit_status, 0) << cli.output;
  EXPECT_THAT(cli.output, HasSubstr("budget-threshold-100"));
  EXPECT_THAT(cli.output, HasSubstr("budget:team-daily"));
  EXPECT_THAT(cli.output, HasSubstr("2026-04-15T00:00:00+00:00"));
}

TEST_F(AlertsTest, WatchAlertsReceivesAFiredAlert) {
  StartAt(Utc(2026, 4, 14, 20));
  SetDailyBudget();
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() +
                       absl::ToChronoSeconds(kPatience));
  std::unique_ptr<grpc::ClientReader<v1::Alert>> reader =
      server_->admin().WatchAlerts(&context, v1::WatchAlertsRequest());
  // Initial metadata means the watch is subscribed.
  reader->WaitForInitialMetadata();
  SpendCalls(9);
  v1::Alert alert;
  // Alerts come in the order they fire; projected exhaustion may come too.
  bool got_threshold = false;
  while (!got_threshold && reader->Read(&alert)) {
    got_threshold = alert.rule() == "budget-threshold-85";
  }
  ASSERT_TRUE(got_threshold) << StatusText(reader->Finish());
  EXPECT_EQ(alert.scope(), "budget:team-daily");
  EXPECT_EQ(alert.missed_before(), 0);
  EXPECT_EQ(alert.id(), Find("budget-threshold-85").id());
  // bursard stopping ends the stream with OK.
  ASSERT_EQ(server_->Terminate(), 0);
  while (reader->Read(&alert)) {
  }
  BURSAR_EXPECT_OK(reader->Finish());
}

std::string Signature(const std::string& secret, const std::string& body) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int length = 0;
  HMAC(EVP_sha256(), secret.data(), static_cast<int>(secret.size()),
       reinterpret_cast<const unsigned char*>(body.data()), body.size(), digest,
       &length);
  return "sha256=" + absl::BytesToHexString(absl::string_view(
                         reinterpret_cast<const char*>(digest), length));
}

TEST_F(AlertsTest, WebhookGetsTheAlertSignedAndAFailingOneDeadLetters) {
  httplib::Server hooks;
  absl::Mutex mu;
  std::vector<std::pair<std::string, std::string>> received;  // body, sig
  int flaky_calls = 0;
  hooks.Post("/hook", [&](const httplib::Request& req, httplib::Response& res) {
    absl::MutexLock lock(&mu);
    // Fails twice before it accepts.
    if (++flaky_calls <= 2) {
      res.status = 500;
      return;
    }
    received.emplace_back(req.body, req.get_header_value("X-Bursar-Signature"));
    res.status = 200;
  });
  hooks.Post("/broken", [&](const httplib::Request&, httplib::Response& res) {
    res.status = 503;
  });
  const int port = hooks.bind_to_any_port("127.0.0.1");
  std::thread serve([&] { hooks.listen_after_bind(); });
  const std::string file = dir_.Sub("hooks.yaml");
  WriteFile(file, absl::StrCat("webhooks:\n"
                               "  - url: http://127.0.0.1:",
                               port,
                               "/hook\n"
                               "    secret: hook-secret\n"
                               "    initial_backoff: 10ms\n"
                               "    min_severity: warning\n"
                               "  - url: http://127.0.0.1:",
                               port,
                               "/broken\n"
                               "    max_attempts: 2\n"
                               "    initial_backoff: 10ms\n"
                               "    min_severity: critical\n"));
  StartAt(Utc(2026, 4, 14, 20), {absl::StrCat("--alert_webhooks_file=", file)});
  SetDailyBudget();
  SpendCalls(10);  // 85% (warning) and 100% (critical)

  // Both thresholds delivered (other alerts, such as projected exhaustion,
  // may come too) and the broken endpoint's dead letter stored.
  auto rules_received = [&] {
    absl::MutexLock lock(&mu);
    std::vector<std::string> rules;
    for (const auto& [body, signature] : received) {
      EXPECT_EQ(signature, Signature("hook-secret", body)) << body;
      EXPECT_THAT(body, HasSubstr("\"scope\":\"budget:team-daily\""));
      if (absl::StrContains(body, "\"budget-threshold-85\"")) {
        rules.push_back("85");
      }
      if (absl::StrContains(body, "\"budget-threshold-100\"")) {
        rules.push_back("100");
      }
    }
    return rules;
  };
  const absl::Time deadline = absl::Now() + kPatience;
  while (rules_received().size() < 2 || List(true).dead_letters_size() < 1) {
    ASSERT_LT(absl::Now(), deadline) << server_->Log();
    absl::SleepFor(absl::Milliseconds(20));
  }
  EXPECT_THAT(rules_received(), ::testing::UnorderedElementsAre("85", "100"));
  const v1::ListAlertsResponse listed = List(true);
  ASSERT_EQ(listed.dead_letters_size(), 1);
  EXPECT_THAT(listed.dead_letters(0).url(), HasSubstr("/broken"));
  EXPECT_EQ(listed.dead_letters(0).attempts(), 2);
  EXPECT_THAT(listed.dead_letters(0).last_error(), HasSubstr("HTTP 503"));
  EXPECT_THAT(listed.dead_letters(0).body(),
              HasSubstr("\"rule\":\"budget-threshold-100\""));

  // /metrics counts the alerts and the deliveries.
  httplib::Client metrics(absl::StrCat("http://", server_->http_address()));
  httplib::Result scraped = metrics.Get("/metrics");
  ASSERT_TRUE(scraped) << httplib::to_string(scraped.error());
  EXPECT_THAT(scraped->body,
              HasSubstr("bursar_alerts_fired_total{severity=\"warning\","
                        "rule=\"budget-threshold-85\"} 1\n"));
  EXPECT_THAT(scraped->body,
              HasSubstr("bursar_alerts_fired_total{severity=\"critical\","
                        "rule=\"budget-threshold-100\"} 1\n"));
  EXPECT_THAT(scraped->body,
              HasSubstr("bursar_alert_deliveries_total{result=\"dead_letter\"}"
                        " 1\n"));
  hooks.stop();
  serve.join();
}

// bursard crashes while a webhook is down and an alert waits for its
// retry: after the restart the outbox sends it, once.
TEST_F(AlertsTest, WebhookDeliveryOutlivesACrash) {
  httplib::Server hooks;
  absl::Mutex mu;
  bool up = false;
  int refused = 0;
  std::vector<std::string> accepted;  // alert ids
  hooks.Post("/hook", [&](const httplib::Request& req, httplib::Response& res) {
    absl::MutexLock lock(&mu);
    if (!up) {
      ++refused;
      res.status = 503;
      return;
    }
    accepted.push_back(req.get_header_value("X-Bursar-Alert-Id"));
    res.status = 200;
  });
  const int port = hooks.bind_to_any_port("127.0.0.1");
  std::thread serve([&] { hooks.listen_after_bind(); });
  const std::string file = dir_.Sub("hooks.yaml");
  WriteFile(file, absl::StrCat("webhooks:\n"
                               "  - url: http://127.0.0.1:",
                               port,
                               "/hook\n"
                               "    max_attempts: 10\n"
                               "    initial_backoff: 1h\n"
                               "    min_severity: critical\n"));
  StartAt(Utc(2026, 4, 14, 20), {absl::StrCat("--alert_webhooks_file=", file)});
  SetDailyBudget();
  SpendCalls(10);  // 100%: critical
  const absl::Time deadline = absl::Now() + kPatience;
  auto refused_count = [&] {
    absl::MutexLock lock(&mu);
    return refused;
  };
  while (refused_count() < 1) {
    ASSERT_LT(absl::Now(), deadline) << server_->Log();
    absl::SleepFor(absl::Milliseconds(20));
  }
  // The first try failed; the next is an hour away. Crash; the webhook
  // comes back; start again.
  server_->Kill9();
  {
    absl::MutexLock lock(&mu);
    up = true;
  }
  ASSERT_TRUE(server_->Start());
  const std::string id = Find("budget-threshold-100").id();
  ASSERT_FALSE(id.empty());
  auto accepted_ids = [&] {
    absl::MutexLock lock(&mu);
    return accepted;
  };
  while (accepted_ids().empty()) {
    ASSERT_LT(absl::Now(), deadline) << server_->Log();
    absl::SleepFor(absl::Milliseconds(20));
  }
  // A fresh pass does not fire it again, so nothing more is sent.
  AwaitFreshPass();
  EXPECT_THAT(accepted_ids(), ::testing::ElementsAre(id));
  EXPECT_THAT(server_->Log(), HasSubstr("alert deliveries pending"));
  EXPECT_EQ(List(true).dead_letters_size(), 0);
  hooks.stop();
  serve.join();
}

}  // namespace
}  // namespace bursar::testing
