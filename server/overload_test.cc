// Load shedding (server/overload.h): the gate's arithmetic, then the real
// DecisionService over gRPC with Checks held in flight by a ledger that
// blocks, and a deadline that has passed by the server's clock; the Envoy
// rate-limit service and the HTTP side port share the same gate.

#include "server/overload.h"

#include <pthread.h>

#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "gmock/gmock.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "policy/loader.h"
#include "server/auth/authenticator.h"
#include "server/clock.h"
#include "server/decider.h"
#include "server/envoy_rls.h"
#include "server/grpc_services.h"
#include "server/http/http_server.h"
#include "server/http/json_api.h"
#include "server/policy_registry.h"
#include "storage/rocks_ledger.h"
#include "tests/support/temp_dir.h"

namespace bursar::server {
namespace {

using ::testing::HasSubstr;

const absl::Time kNow = absl::FromUnixSeconds(1'790'000'000);

TEST(CallGateTest, RefusesPastTheBoundAndAdmitsAgainWhenACallLeaves) {
  CallGate gate(2);
  CallGate::Pass a, b, c;
  ASSERT_TRUE(gate.Enter(absl::InfiniteFuture(), kNow, &a).ok());
  ASSERT_TRUE(gate.Enter(absl::InfiniteFuture(), kNow, &b).ok());
  EXPECT_EQ(gate.in_flight(), 2);
  absl::Status refused = gate.Enter(absl::InfiniteFuture(), kNow, &c);
  EXPECT_EQ(refused.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(refused.message(), HasSubstr("--max_in_flight_calls=2"));
  EXPECT_THAT(refused.message(), HasSubstr("2 calls in flight"));
  EXPECT_EQ(gate.in_flight(), 2);
  EXPECT_EQ(gate.refused_overload(), 1);

  a = CallGate::Pass();  // leaves
  EXPECT_EQ(gate.in_flight(), 1);
  EXPECT_TRUE(gate.Enter(absl::InfiniteFuture(), kNow, &c).ok());
  EXPECT_EQ(gate.in_flight(), 2);
}

TEST(CallGateTest, AnExpiredDeadlineIsRefusedWithoutTakingAPlace) {
  CallGate gate(1);
  CallGate::Pass pass;
  absl::Status refused = gate.Enter(kNow - absl::Milliseconds(5), kNow, &pass);
  EXPECT_EQ(refused.code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_THAT(refused.message(), HasSubstr("passed 5ms before"));
  EXPECT_EQ(gate.in_flight(), 0);
  EXPECT_EQ(gate.refused_deadline(), 1);
  EXPECT_TRUE(gate.Enter(kNow + absl::Seconds(1), kNow, &pass).ok());
}

TEST(CallGateTest, OneCallRunsInlineAtATimeAndTheNextGoesToAWorker) {
  CallGate gate(8, /*worker_threads=*/2, /*clock=*/nullptr,
                /*inline_calls=*/1);
  const std::thread::id caller = std::this_thread::get_id();
  std::thread::id first, second, third;
  absl::Notification first_running, release_first, second_done;
  std::thread other([&] {
    gate.Run([&] {
      first = std::this_thread::get_id();
      first_running.Notify();
      release_first.WaitForNotification();
    });
  });
  first_running.WaitForNotification();
  // The inline place is taken: this one is handed to a worker.
  std::string second_thread_name;
  gate.Run([&] {
    second = std::this_thread::get_id();
    char name[16] = {};
    pthread_getname_np(pthread_self(), name, sizeof(name));
    second_thread_name = name;
    second_done.Notify();
  });
  second_done.WaitForNotification();
  release_first.Notify();
  const std::thread::id other_id = other.get_id();
  other.join();
  // Free again: it runs on the caller's thread.
  gate.Run([&] { third = std::this_thread::get_id(); });
  EXPECT_EQ(first, other_id);
  EXPECT_NE(second, caller);
  EXPECT_NE(second, other_id);
  // Named, so that `top -H` and perf tell the calls' threads apart.
  EXPECT_EQ(second_thread_name, "gate-worker");
  EXPECT_EQ(third, caller);
}

// A ledger whose Reserve waits for Release(): Checks stay in flight.
class BlockingLedger final : public storage::Ledger {
 public:
  explicit BlockingLedger(std::unique_ptr<storage::Ledger> inner)
      : inner_(std::move(inner)) {}

  void Block() {
    absl::MutexLock lock(&mu_);
    blocked_ = true;
  }
  void Release() {
    absl::MutexLock lock(&mu_);
    blocked_ = false;
  }
  // Waits until `n` Reserves are blocked.
  void AwaitBlocked(int n) {
    absl::MutexLock lock(&mu_);
    auto enough = [this, n]()
                      ABSL_SHARED_LOCKS_REQUIRED(mu_) { return waiting_ >= n; };
    mu_.Await(absl::Condition(&enough));
  }

  absl::StatusOr<storage::ReserveResult> Reserve(
      const storage::ReserveRequest& request, absl::Time now) override {
    {
      absl::MutexLock lock(&mu_);
      ++waiting_;
      auto open = [this]()
                      ABSL_SHARED_LOCKS_REQUIRED(mu_) { return !blocked_; };
      mu_.Await(absl::Condition(&open));
      --waiting_;
    }
    return inner_->Reserve(request, now);
  }

  absl::StatusOr<std::pair<storage::BudgetSpec, bool>> SetBudget(
      storage::BudgetSpec spec, const storage::Actor& actor,
      absl::Time now) override {
    return inner_->SetBudget(std::move(spec), actor, now);
  }
  absl::Status DeleteBudget(absl::string_view name, const storage::Actor& actor,
                            absl::Time now) override {
    return inner_->DeleteBudget(name, actor, now);
  }
  std::optional<storage::BudgetSpec> GetBudget(
      absl::string_view name) const override {
    return inner_->GetBudget(name);
  }
  std::vector<storage::BudgetSpec> ListBudgets() const override {
    return inner_->ListBudgets();
  }
  std::vector<std::string> ListBudgetNames() const override {
    return inner_->ListBudgetNames();
  }
  absl::StatusOr<std::optional<storage::BudgetFigures>> Peek(
      absl::string_view budget, const storage::LabelSet& labels,
      absl::Time now) const override {
    return inner_->Peek(budget, labels, now);
  }
  absl::StatusOr<std::vector<storage::Standing>> Standings(
      absl::string_view budget, absl::string_view instance,
      absl::Time now) const override {
    return inner_->Standings(budget, instance, now);
  }
  std::vector<storage::AuditEntry> ListAudit(size_t limit) const override {
    return inner_->ListAudit(limit);
  }
  absl::StatusOr<storage::HoldView> GetHold(
      absl::string_view reservation_id) const override {
    return inner_->GetHold(reservation_id);
  }
  absl::StatusOr<storage::SettleResult> Settle(
      absl::string_view reservation_id, int64_t cost_nanos, absl::Time now,
      const storage::UsageUpdate* usage,
      absl::Span<const storage::SideCounterDelta> side_counters,
      uint64_t* durable_ticket) override {
    return inner_->Settle(reservation_id, cost_nanos, now, usage,
                          side_counters, durable_ticket);
  }
  void WhenDurable(uint64_t ticket,
                   absl::AnyInvocable<void(absl::Status) &&> done) override {
    inner_->WhenDurable(ticket, std::move(done));
  }
  absl::StatusOr<int> ExpireHolds(
      absl::Time now, std::vector<storage::HoldView>* expired) override {
    return inner_->ExpireHolds(now, expired);
  }
  absl::Status ForEachSideCounter(
      absl::string_view from, absl::string_view to,
      absl::FunctionRef<void(absl::string_view key, int64_t value)> visit)
      const override {
    return inner_->ForEachSideCounter(from, to, visit);
  }
  absl::Status DeleteSideCounters(absl::string_view from,
                                  absl::string_view to) override {
    return inner_->DeleteSideCounters(from, to);
  }
  void ForEachOpenHold(
      absl::FunctionRef<void(const storage::HoldView&)> visit) const override {
    inner_->ForEachOpenHold(visit);
  }
  size_t open_holds() const override { return inner_->open_holds(); }

 private:
  std::unique_ptr<storage::Ledger> inner_;
  absl::Mutex mu_;
  bool blocked_ ABSL_GUARDED_BY(mu_) = false;
  int waiting_ ABSL_GUARDED_BY(mu_) = 0;
};

constexpr char kPolicy[] = R"yaml(
apiVersion: bursar.dev/v1
kind: Policy
metadata: { name: test }
pricing:
  gpt-4.1: { provider: openai, input: "2.00", cached_input: "0.50", output: "8.00" }
defaults: { max_output_tokens: 1000, unknown_model: reject }
)yaml";

class OverloadTest : public ::testing::Test {
 protected:
  void SetUp() override {
    storage::RocksLedgerOptions options;
    options.path = dir_.path();
    options.sync = storage::SyncMode::kNone;
    auto inner = storage::OpenRocksLedger(options);
    ASSERT_TRUE(inner.ok()) << inner.status();
    ledger_ = std::make_unique<BlockingLedger>(*std::move(inner));
    policy::CompileResult compiled =
        policy::CompilePolicy({{"p.yaml", kPolicy}});
    ASSERT_NE(compiled.policy, nullptr);
    policies_ = std::make_unique<PolicyRegistry>(compiled.policy);
    decider_ = std::make_unique<Decider>(ledger_.get(), policies_.get(),
                                         &clock_, DeciderOptions{});
    storage::BudgetSpec spec;
    spec.name = "org";
    spec.amount_nanos = 1'000'000'000;
    spec.period = storage::Period::kNone;
    ASSERT_TRUE(ledger_->SetBudget(spec, {"test", ""}, clock_.Now()).ok());

    // As bursard: one call at a time on gRPC's threads, the rest on workers.
    gate_ = std::make_unique<CallGate>(2, /*worker_threads=*/4, &clock_,
                                       /*inline_calls=*/1);
    service_ =
        std::make_unique<DecisionService>(decider_.get(), &auth_, gate_.get());
    rate_limiter_ = std::make_unique<EnvoyRateLimiter>(decider_.get());
    rls_service_ = std::make_unique<EnvoyRateLimitService>(
        rate_limiter_.get(), &auth_, gate_.get());
    decider_calls_ = std::make_unique<http::DeciderCalls>(decider_.get());
    http::AddDecisionRoutes(&http_, decider_calls_.get());
    http_.HandleGet("/metrics", [] {
      http::HttpReply reply;
      reply.body = "metrics";
      return reply;
    });
    http_.SetCallGate(gate_.get());
    grpc::ServerBuilder builder;
    int port = 0;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(),
                             &port);
    builder.RegisterService(service_.get());
    builder.RegisterService(rls_service_.get());
    server_ = builder.BuildAndStart();
    ASSERT_NE(server_, nullptr);
    ASSERT_NE(port, 0);
    auto channel = grpc::CreateChannel(absl::StrCat("127.0.0.1:", port),
                                       grpc::InsecureChannelCredentials());
    stub_ = v1::Decision::NewStub(channel);
    rls_stub_ =
        envoy::service::ratelimit::v3::RateLimitService::NewStub(channel);
  }
  void TearDown() override {
    ledger_->Release();
    if (server_ != nullptr) server_->Shutdown();
    server_.reset();
    rls_service_.reset();
    service_.reset();
    gate_.reset();  // after the server: no more work can arrive
  }

  grpc::Status Check(const std::string& request_id, v1::CheckResponse* response,
                     absl::Duration timeout = absl::Seconds(60)) {
    v1::CheckRequest request;
    request.set_request_id(request_id);
    request.set_model("gpt-4.1");
    request.set_input_tokens(1000);
    request.set_max_output_tokens(1000);
    grpc::ClientContext context;
    context.set_deadline(absl::ToChronoTime(absl::Now() + timeout));
    return stub_->Check(&context, request, response);
  }

  // One hit of output tokens of gpt-4.1 through Envoy's rate-limit API.
  grpc::Status ShouldRateLimit(
      envoy::service::ratelimit::v3::RateLimitResponse* response,
      absl::Duration timeout = absl::Seconds(60)) {
    envoy::service::ratelimit::v3::RateLimitRequest request;
    request.set_domain("edge");
    auto* entry = request.add_descriptors()->add_entries();
    entry->set_key("model");
    entry->set_value("gpt-4.1");
    grpc::ClientContext context;
    context.set_deadline(absl::ToChronoTime(absl::Now() + timeout));
    return rls_stub_->ShouldRateLimit(&context, request, response);
  }

  // POST /v1/check as the HTTP server dispatches it; `timeout_ms` goes into
  // x-bursar-timeout-ms unless empty.
  http::HttpReply HttpCheck(const std::string& request_id,
                            const std::string& timeout_ms = "") {
    http::HttpRequest request;
    request.method = "POST";
    request.path = "/v1/check";
    request.headers.emplace_back("content-type", "application/json");
    if (!timeout_ms.empty()) {
      request.headers.emplace_back("x-bursar-timeout-ms", timeout_ms);
    }
    request.body = absl::StrCat(
        R"({"request_id": ")", request_id,
        R"(", "model": "gpt-4.1", "input_tokens": 1000,)"
        R"( "max_output_tokens": 1000})");
    return http_.Dispatch(request);
  }

  int64_t Spent() {
    auto figures = ledger_->Peek("org", storage::LabelSet(), clock_.Now());
    EXPECT_TRUE(figures.ok() && figures->has_value());
    return figures.ok() && figures->has_value() ? (*figures)->spent_nanos : -1;
  }

  int64_t Held() {
    auto figures = ledger_->Peek("org", storage::LabelSet(), clock_.Now());
    EXPECT_TRUE(figures.ok() && figures->has_value());
    return figures.ok() && figures->has_value() ? (*figures)->held_nanos : -1;
  }

  bursar::testing::TempDir dir_;
  // The server's clock is real time: tests move it to make deadlines pass.
  FakeClock clock_{absl::Now()};
  auth::Authenticator auth_{auth::Authenticator::Options{false, false}, {}};
  std::unique_ptr<BlockingLedger> ledger_;
  std::unique_ptr<PolicyRegistry> policies_;
  std::unique_ptr<Decider> decider_;
  std::unique_ptr<CallGate> gate_;
  std::unique_ptr<DecisionService> service_;
  std::unique_ptr<EnvoyRateLimiter> rate_limiter_;
  std::unique_ptr<EnvoyRateLimitService> rls_service_;
  std::unique_ptr<http::DeciderCalls> decider_calls_;
  http::HttpServer http_;  // not started: requests go through Dispatch
  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<v1::Decision::Stub> stub_;
  std::unique_ptr<envoy::service::ratelimit::v3::RateLimitService::Stub>
      rls_stub_;
};

TEST_F(OverloadTest, PastTheBoundACheckIsRefusedAtOnceAndDoesNoWork) {
  ledger_->Block();
  grpc::Status first_status, second_status;
  v1::CheckResponse first, second;
  std::thread t1([&] { first_status = Check("a", &first); });
  std::thread t2([&] { second_status = Check("b", &second); });
  ledger_->AwaitBlocked(2);
  EXPECT_EQ(gate_->in_flight(), 2);

  v1::CheckResponse refused;
  grpc::Status status = Check("c", &refused);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED)
      << status.error_message();
  EXPECT_THAT(status.error_message(), HasSubstr("--max_in_flight_calls=2"));

  ledger_->Release();
  t1.join();
  t2.join();
  EXPECT_TRUE(first_status.ok()) << first_status.error_message();
  EXPECT_TRUE(second_status.ok()) << second_status.error_message();
  EXPECT_EQ(gate_->in_flight(), 0);
  // a and b hold 0.01 USD each; c reserved nothing.
  EXPECT_EQ(Held(), 20'000'000);
  EXPECT_EQ(ledger_->open_holds(), 2u);

  // The retry of c once load is down is served.
  ASSERT_TRUE(Check("c", &refused).ok());
  EXPECT_EQ(refused.verdict(), v1::VERDICT_ALLOW);
  EXPECT_EQ(Held(), 30'000'000);
}

TEST_F(OverloadTest, ACheckWhoseDeadlinePassedReservesNothing) {
  // By the server's clock the call's 60 s deadline passed a minute ago.
  clock_.Advance(absl::Minutes(2));
  v1::CheckResponse response;
  grpc::Status status = Check("late", &response, absl::Seconds(60));
  EXPECT_EQ(status.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED)
      << status.error_message();
  EXPECT_THAT(status.error_message(), HasSubstr("nothing was done"));
  EXPECT_EQ(Held(), 0);
  EXPECT_EQ(ledger_->open_holds(), 0u);
  EXPECT_EQ(gate_->refused_deadline(), 1);

  // With time to spare the same request is served.
  ASSERT_TRUE(Check("late", &response, absl::Minutes(10)).ok());
  EXPECT_EQ(Held(), 10'000'000);
}

// Two Checks hold both places: Envoy's ShouldRateLimit and the HTTP side
// port's POST /v1/check are refused at once and charge nothing; /metrics
// (a GET route) is not counted; once the places are free both are served.
TEST_F(OverloadTest, RateLimitServiceAndHttpPortShareTheBound) {
  ledger_->Block();
  grpc::Status first_status, second_status;
  v1::CheckResponse first, second;
  std::thread t1([&] { first_status = Check("a", &first); });
  std::thread t2([&] { second_status = Check("b", &second); });
  ledger_->AwaitBlocked(2);
  ASSERT_EQ(gate_->in_flight(), 2);

  envoy::service::ratelimit::v3::RateLimitResponse rls;
  grpc::Status status = ShouldRateLimit(&rls);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED)
      << status.error_message();
  EXPECT_THAT(status.error_message(), HasSubstr("--max_in_flight_calls=2"));

  http::HttpReply reply = HttpCheck("h");
  EXPECT_EQ(reply.status, 429) << reply.body;
  EXPECT_THAT(reply.body, HasSubstr("\"code\":\"RESOURCE_EXHAUSTED\""));
  EXPECT_THAT(reply.body, HasSubstr("--max_in_flight_calls=2"));
  http::HttpRequest metrics;
  metrics.method = "GET";
  metrics.path = "/metrics";
  EXPECT_EQ(http_.Dispatch(metrics).status, 200);
  EXPECT_EQ(gate_->refused_overload(), 2);

  ledger_->Release();
  t1.join();
  t2.join();
  ASSERT_TRUE(first_status.ok()) << first_status.error_message();
  ASSERT_TRUE(second_status.ok()) << second_status.error_message();
  EXPECT_EQ(gate_->in_flight(), 0);
  // Only a and b hold (0.01 USD each); nothing was spent.
  EXPECT_EQ(Held(), 20'000'000);
  EXPECT_EQ(Spent(), 0);
  EXPECT_EQ(ledger_->open_holds(), 2u);

  // With room again: the hit is charged at once (one output token of
  // gpt-4.1: 8 USD per million = 8,000 nanos) and the HTTP Check holds.
  status = ShouldRateLimit(&rls);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(rls.overall_code(),
            envoy::service::ratelimit::v3::RateLimitResponse::OK);
  EXPECT_EQ(Spent(), 8'000);
  reply = HttpCheck("h");
  EXPECT_EQ(reply.status, 200) << reply.body;
  EXPECT_EQ(Held(), 30'000'000);
  EXPECT_EQ(gate_->in_flight(), 0);
}

TEST_F(OverloadTest, ExpiredDeadlinesOnTheSidePortsDoNoWork) {
  // By the gate's clock a 60 s deadline set now passed a minute ago.
  clock_.Advance(absl::Minutes(2));
  envoy::service::ratelimit::v3::RateLimitResponse rls;
  grpc::Status status = ShouldRateLimit(&rls, absl::Seconds(60));
  EXPECT_EQ(status.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED)
      << status.error_message();
  EXPECT_THAT(status.error_message(), HasSubstr("nothing was done"));

  http::HttpReply reply = HttpCheck("late", "60000");
  EXPECT_EQ(reply.status, 504) << reply.body;
  EXPECT_THAT(reply.body, HasSubstr("\"code\":\"DEADLINE_EXCEEDED\""));
  EXPECT_EQ(gate_->refused_deadline(), 2);
  EXPECT_EQ(Held(), 0);
  EXPECT_EQ(Spent(), 0);
  EXPECT_EQ(ledger_->open_holds(), 0u);

  // A timeout that is not a number is the caller's mistake, named.
  reply = HttpCheck("late", "soon");
  EXPECT_EQ(reply.status, 400) << reply.body;
  EXPECT_THAT(reply.body, HasSubstr("x-bursar-timeout-ms"));
  EXPECT_EQ(ledger_->open_holds(), 0u);

  // With time to spare both are served.
  ASSERT_TRUE(ShouldRateLimit(&rls, absl::Minutes(10)).ok());
  EXPECT_EQ(Spent(), 8'000);
  reply = HttpCheck("late", "600000");
  EXPECT_EQ(reply.status, 200) << reply.body;
  EXPECT_EQ(Held(), 10'000'000);
}

// The deadline header: the smaller of the two, from when it was read.
TEST(RequestDeadlineTest, TakesTheSmallerTimeoutFromReceipt) {
  http::HttpRequest request;
  request.received = kNow;
  EXPECT_EQ(*http::RequestDeadline(request), absl::InfiniteFuture());
  request.headers = {{"x-envoy-expected-rq-timeout-ms", "250"}};
  EXPECT_EQ(*http::RequestDeadline(request), kNow + absl::Milliseconds(250));
  request.headers.emplace_back("x-bursar-timeout-ms", "100");
  EXPECT_EQ(*http::RequestDeadline(request), kNow + absl::Milliseconds(100));
  request.headers = {{"x-bursar-timeout-ms", "-5"}};
  EXPECT_EQ(http::RequestDeadline(request).status().code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace bursar::server
