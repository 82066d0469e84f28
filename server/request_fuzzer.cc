// libFuzzer target for the request path and the admin inputs: one input is
// a kind byte and a serialized proto, handled as bursard handles it after
// authentication, against a real RocksLedger (in a temp dir) and the
// example policy (policies/example):
//   0: CheckRequest  -> Decider::Check (ValidateCheckRequest first)
//   1: ReportRequest -> Decider::Report; an empty reservation_id reports the
//      latest reservation this process issued
//   2: Budget        -> BudgetAdmin::SetBudget, then GetBudget
//   3: PushPolicyRequest -> PolicyAdmin::PushPolicy (dry runs and real ones)
// State carries over between inputs (budgets, holds, pushed policies), and
// the fake clock moves a minute per input, so expiry and period changes are
// reached too. Any status outside what the API documents for the call, and
// any answer that breaks an invariant, aborts. Built with clang only
// (tests/fuzz/CMakeLists.txt); run as
//   bursar_request_fuzzer -max_total_time=30 tests/fuzz/request_corpus
// tests/fuzz/run_fuzzers.sh runs it from ctest.

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "bursar/v1/admin.pb.h"
#include "bursar/v1/decision.pb.h"
#include "server/auth/authenticator.h"
#include "server/budget_admin.h"
#include "server/clock.h"
#include "server/decider.h"
#include "server/policy_admin.h"
#include "server/policy_registry.h"
#include "storage/rocks_storage.h"

namespace bursar::server {
namespace {

[[noreturn]] void Fail(const char* what, const absl::Status& status) {
  std::fprintf(stderr, "request fuzzer: %s: %s\n", what,
               status.ToString().c_str());
  std::abort();
}

bool OneOf(const absl::Status& s, std::initializer_list<absl::StatusCode> ok) {
  for (absl::StatusCode code : ok) {
    if (s.code() == code) return true;
  }
  return false;
}

struct World {
  World() {
    char dir_template[] = "/tmp/bursar-request-fuzzer.XXXXXX";
    const char* dir = mkdtemp(dir_template);
    if (dir == nullptr) Fail("mkdtemp", absl::InternalError("failed"));
    data_dir = dir;
    // The world is never destroyed; its directory goes at exit.
    static std::string* const to_remove = new std::string(data_dir);
    std::atexit([] {
      std::error_code ignored;
      std::filesystem::remove_all(*to_remove, ignored);
    });
    storage::RocksLedgerOptions options;
    options.path = data_dir;
    options.sync = storage::SyncMode::kNone;
    absl::StatusOr<storage::RocksStorage> opened =
        storage::OpenRocksStorage(options);
    if (!opened.ok()) Fail("opening the ledger", opened.status());
    storage = std::move(*opened);
    absl::StatusOr<std::shared_ptr<const policy::CompiledPolicy>> policy =
        LoadPolicyDir(BURSAR_POLICY_DIR);
    if (!policy.ok()) Fail("loading policies/example", policy.status());
    registry = std::make_unique<PolicyRegistry>(*policy);
    decider = std::make_unique<Decider>(storage.ledger.get(), registry.get(),
                                        &clock, DeciderOptions{});
    budgets = std::make_unique<BudgetAdmin>(storage.ledger.get(), &clock);
    policies = std::make_unique<PolicyAdmin>(storage.policy_versions.get(),
                                             registry.get(), &clock);
  }
  // Left to the OS at exit: libFuzzer never destroys it.
  std::string data_dir;
  FakeClock clock{absl::FromUnixSeconds(1'773'846'000)};  // 2026-03-18
  storage::RocksStorage storage;
  std::unique_ptr<PolicyRegistry> registry;
  std::unique_ptr<Decider> decider;
  std::unique_ptr<BudgetAdmin> budgets;
  std::unique_ptr<PolicyAdmin> policies;
  std::string last_reservation;
};

World& TheWorld() {
  static World* world = new World();
  return *world;
}

void RunCheck(World& w, const v1::CheckRequest& request) {
  const absl::Status valid = ValidateCheckRequest(request);
  v1::CheckResponse response;
  const absl::Status status = w.decider->Check(request, &response);
  if (!valid.ok()) {
    if (status.code() != valid.code()) Fail("Check vs its validation", status);
    return;
  }
  // An unknown model under `unknown_model: reject` is INVALID_ARGUMENT.
  if (!OneOf(status,
             {absl::StatusCode::kOk, absl::StatusCode::kInvalidArgument})) {
    Fail("Check", status);
  }
  if (!status.ok()) return;
  if (response.estimated_cost_nanos() < 0) {
    Fail("Check", absl::InternalError("negative estimate"));
  }
  if (response.verdict() == v1::VERDICT_ALLOW && !request.dry_run()) {
    if (response.reservation_id().empty()) {
      Fail("Check", absl::InternalError("ALLOW without a reservation"));
    }
    w.last_reservation = response.reservation_id();
  }
  for (const v1::BudgetStanding& s : response.budgets()) {
    if (s.held_nanos() < 0 || s.remaining_nanos() < 0) {
      Fail("Check", absl::InternalError("negative budget figures"));
    }
  }
}

void RunReport(World& w, v1::ReportRequest request) {
  if (request.reservation_id().empty()) {
    request.set_reservation_id(w.last_reservation);
  }
  v1::ReportResponse response;
  const absl::Status status = w.decider->Report(request, &response);
  if (!OneOf(status, {absl::StatusCode::kOk, absl::StatusCode::kInvalidArgument,
                      absl::StatusCode::kNotFound})) {
    Fail("Report", status);
  }
  if (status.ok() && response.cost_nanos() < 0) {
    Fail("Report", absl::InternalError("negative cost"));
  }
}

void RunSetBudget(World& w, const v1::Budget& budget) {
  v1::SetBudgetRequest request;
  *request.mutable_budget() = budget;
  request.set_actor("fuzzer");
  v1::SetBudgetResponse response;
  const absl::Status status =
      w.budgets->SetBudget(request, auth::Caller{}, &response);
  if (!OneOf(status,
             {absl::StatusCode::kOk, absl::StatusCode::kInvalidArgument})) {
    Fail("SetBudget", status);
  }
  if (!status.ok()) return;
  v1::GetBudgetRequest get;
  get.set_name(response.budget().name());
  v1::GetBudgetResponse got;
  const absl::Status read = w.budgets->GetBudget(get, &got);
  if (!read.ok()) Fail("GetBudget after SetBudget", read);
  if (got.budget().amount_nanos() != response.budget().amount_nanos()) {
    Fail("GetBudget", absl::InternalError("amount differs from SetBudget's"));
  }
}

void RunPushPolicy(World& w, const v1::PushPolicyRequest& request) {
  v1::PushPolicyResponse response;
  const absl::Status status =
      w.policies->PushPolicy(request, auth::Caller{}, &response);
  if (!OneOf(status, {absl::StatusCode::kOk, absl::StatusCode::kInvalidArgument,
                      absl::StatusCode::kFailedPrecondition})) {
    Fail("PushPolicy", status);
  }
  if (w.registry->Active() == nullptr) {
    Fail("PushPolicy", absl::InternalError("no active policy"));
  }
}

}  // namespace
}  // namespace bursar::server

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace bursar;  // NOLINT: a fuzzer's entry point
  if (size < 1) return 0;
  server::World& w = server::TheWorld();
  w.clock.Advance(absl::Minutes(1));
  (void)w.decider->ExpireReservations();
  const uint8_t kind = data[0] % 4;
  const void* bytes = data + 1;
  const int length = static_cast<int>(size - 1);
  switch (kind) {
    case 0: {
      v1::CheckRequest request;
      if (request.ParseFromArray(bytes, length)) server::RunCheck(w, request);
      break;
    }
    case 1: {
      v1::ReportRequest request;
      if (request.ParseFromArray(bytes, length)) {
        server::RunReport(w, std::move(request));
      }
      break;
    }
    case 2: {
      v1::Budget budget;
      if (budget.ParseFromArray(bytes, length)) server::RunSetBudget(w, budget);
      break;
    }
    case 3: {
      v1::PushPolicyRequest request;
      if (request.ParseFromArray(bytes, length)) {
        server::RunPushPolicy(w, request);
      }
      break;
    }
  }
  return 0;
}
