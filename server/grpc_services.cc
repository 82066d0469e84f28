#include "server/grpc_services.h"

#include <atomic>
#include <chrono>
#include <string>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "grpc/grpc_security_constants.h"
#include "server/log.h"

namespace bursar::server {
namespace {

using LF = LogField;

constexpr absl::string_view kCheck = "/bursar.v1.Decision/Check";
constexpr absl::string_view kReport = "/bursar.v1.Decision/Report";
constexpr absl::string_view kSetBudget = "/bursar.v1.Admin/SetBudget";
constexpr absl::string_view kGetBudget = "/bursar.v1.Admin/GetBudget";
constexpr absl::string_view kListBudgets = "/bursar.v1.Admin/ListBudgets";
constexpr absl::string_view kDeleteBudget = "/bursar.v1.Admin/DeleteBudget";
constexpr absl::string_view kListAudit = "/bursar.v1.Admin/ListAudit";
constexpr absl::string_view kPushPolicy = "/bursar.v1.Admin/PushPolicy";
constexpr absl::string_view kGetPolicy = "/bursar.v1.Admin/GetPolicy";
constexpr absl::string_view kListPolicyVersions =
    "/bursar.v1.Admin/ListPolicyVersions";
constexpr absl::string_view kActivatePolicyVersion =
    "/bursar.v1.Admin/ActivatePolicyVersion";
constexpr absl::string_view kStopShadow = "/bursar.v1.Admin/StopShadow";
constexpr absl::string_view kGetShadowReport =
    "/bursar.v1.Admin/GetShadowReport";
constexpr absl::string_view kListAlerts = "/bursar.v1.Admin/ListAlerts";
constexpr absl::string_view kWatchAlerts = "/bursar.v1.Admin/WatchAlerts";
constexpr absl::string_view kGetUsage = "/bursar.v1.Admin/GetUsage";
constexpr absl::string_view kReportSignal = "/bursar.v1.Admin/ReportSignal";
constexpr absl::string_view kListSignals = "/bursar.v1.Admin/ListSignals";
constexpr absl::string_view kCreateBackup = "/bursar.v1.Admin/CreateBackup";

// At most kMaxRefusalLinesPerSecond refusal lines a second, so that a
// misconfigured gateway cannot flood the log; the count of lines left out
// goes into the next line written.
constexpr int kMaxRefusalLinesPerSecond = 20;
std::atomic<int64_t> refusal_second{0};
std::atomic<int> refusal_lines{0};
std::atomic<int64_t> refusals_suppressed{0};

void LogRefusalLine(absl::string_view what, absl::string_view method,
                    const grpc::ServerContextBase& context,
                    const absl::Status& status) {
  const int64_t now = absl::ToUnixSeconds(absl::Now());
  int64_t second = refusal_second.load(std::memory_order_relaxed);
  if (second != now && refusal_second.compare_exchange_strong(
                           second, now, std::memory_order_relaxed)) {
    refusal_lines.store(0, std::memory_order_relaxed);
  }
  if (refusal_lines.fetch_add(1, std::memory_order_relaxed) >=
      kMaxRefusalLinesPerSecond) {
    refusals_suppressed.fetch_add(1, std::memory_order_relaxed);
    return;
  }
  const int64_t suppressed =
      refusals_suppressed.exchange(0, std::memory_order_relaxed);
  // The message is the one the caller gets: it names the caller and role,
  // never the token.
  Log(LogLevel::kWarning, what,
      {LF{"method", std::string(method)},
       LF{"code", absl::StatusCodeToString(status.code())},
       LF{"peer", context.peer()}, LF{"reason", std::string(status.message())},
       LF{"suppressed_before", absl::StrCat(suppressed)}});
}

void LogRefusal(absl::string_view method,
                const grpc::ServerContextBase& context,
                const absl::Status& status) {
  LogRefusalLine("call refused", method, context, status);
}

// Calls shed before any work (expired deadline, overload); they share the
// refusal lines' rate limit.
void LogShed(absl::string_view method, const grpc::ServerContextBase& context,
             const absl::Status& status) {
  LogRefusalLine("call shed", method, context, status);
}

// The call's deadline; InfiniteFuture when it has none.
absl::Time DeadlineOf(const grpc::ServerContextBase& context) {
  const std::chrono::system_clock::time_point deadline = context.deadline();
  if (deadline == std::chrono::system_clock::time_point::max()) {
    return absl::InfiniteFuture();
  }
  return absl::FromChrono(deadline);
}

// A Decision call's answer before its write is durable
// (Decider::CheckDeferred): sent once `decider` reports the write durable.
struct DeferredAnswer {
  absl::Status status;
  Decider* decider = nullptr;
  uint64_t durable_ticket = 0;
};

// Sends the answer and frees the call's place in the gate first: once the
// caller has its answer, the call no longer counts against the bound.
void Answer(grpc::ServerUnaryReactor* reactor, CallGate::Pass pass,
            const absl::Status& status) {
  pass.Leave();
  reactor->Finish(ToGrpcStatus(status));
}

// ... or, for a deferred answer, once its write is durable: no thread waits
// for the fsync, and every call in flight shares it (--sync=group).
void Answer(grpc::ServerUnaryReactor* reactor, CallGate::Pass pass,
            DeferredAnswer answer) {
  if (!answer.status.ok() || answer.durable_ticket == 0) {
    return Answer(reactor, std::move(pass), answer.status);
  }
  answer.decider->WhenDurable(
      answer.durable_ticket,
      [reactor, pass = std::move(pass)](absl::Status durable) mutable {
        Answer(reactor, std::move(pass), durable);
      });
}

// Enters the gate (deadline, then in-flight bound), admits the caller, runs
// `call(caller)` (an absl::Status or a DeferredAnswer) and finishes the RPC
// with its answer. A refused call does no work.
template <typename Call>
grpc::ServerUnaryReactor* Unary(grpc::CallbackServerContext* context,
                                const auth::Authenticator& auth, CallGate* gate,
                                absl::string_view method, Call&& call) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  CallGate::Pass pass;
  if (gate != nullptr) {
    absl::Status entered = gate->Enter(DeadlineOf(*context), &pass);
    if (!entered.ok()) {
      LogShed(method, *context, entered);
      reactor->Finish(ToGrpcStatus(entered));
      return reactor;
    }
  }
  auto work = [context, reactor, &auth, method, call = std::forward<Call>(call),
               pass = std::move(pass)]() mutable {
    absl::StatusOr<auth::Caller> caller = AdmitCall(auth, *context, method);
    if (!caller.ok()) return Answer(reactor, std::move(pass), caller.status());
    Answer(reactor, std::move(pass), call(*caller));
  };
  // The request, response and context live until Finish; `call` captures
  // them by pointer.
  if (gate == nullptr) {
    work();
  } else {
    gate->Run(std::move(work));
  }
  return reactor;
}

// Admin.WatchAlerts: writes the alerts its hub subscription queues, one
// write at a time. The hub calls Pump (under the hub's lock) when something
// is queued; OnWriteDone pumps the next. gRPC runs OnWriteDone and OnDone
// on its own threads, never inline in StartWrite or Finish, so Pump may
// call them while holding mu_.
using AlertSubscriptionPtr = std::shared_ptr<alerts::AlertSubscription>;

class WatchAlertsReactor final : public grpc::ServerWriteReactor<v1::Alert> {
 public:
  explicit WatchAlertsReactor(alerts::AlertHub* hub) : hub_(hub) {
    std::shared_ptr<alerts::AlertSubscription> subscription =
        hub_->Subscribe([this] { Pump(); });
    {
      absl::MutexLock lock(&mu_);
      subscription_ = std::move(subscription);
      // Tells the watcher it is subscribed: every alert that fires from
      // now on reaches it.
      StartSendInitialMetadata();
    }
    Pump();
  }
  // For a call refused before it subscribes.
  explicit WatchAlertsReactor(const grpc::Status& refusal) : hub_(nullptr) {
    absl::MutexLock lock(&mu_);
    finished_ = true;
    Finish(refusal);
  }

  void OnWriteDone(bool ok) override {
    {
      absl::MutexLock lock(&mu_);
      writing_ = false;
      if (!ok) {
        // The client went away.
        FinishLocked(
            grpc::Status(grpc::StatusCode::CANCELLED, "the watcher went away"));
        return;
      }
    }
    Pump();
  }
  void OnCancel() override {
    absl::MutexLock lock(&mu_);
    FinishLocked(grpc::Status(grpc::StatusCode::CANCELLED, "cancelled"));
  }
  void OnDone() override {
    // After Unsubscribe returns the hub never calls Pump again.
    if (hub_ != nullptr) {
      const AlertSubscriptionPtr subscription = [&] {
        absl::MutexLock lock(&mu_);
        return subscription_;
      }();
      hub_->Unsubscribe(subscription.get());
    }
    delete this;
  }

 private:
  void Pump() {
    absl::MutexLock lock(&mu_);
    if (writing_ || finished_ || subscription_ == nullptr) return;
    storage::AlertEntry alert;
    int64_t missed = 0;
    if (subscription_->Pop(&alert, &missed)) {
      message_.Clear();
      AlertToProto(alert, &message_);
      message_.set_missed_before(missed);
      writing_ = true;
      StartWrite(&message_);
    } else if (subscription_->closed()) {
      FinishLocked(grpc::Status::OK);
    }
  }
  void FinishLocked(const grpc::Status& status)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (finished_) return;
    finished_ = true;
    Finish(status);
  }

  alerts::AlertHub* const hub_;
  absl::Mutex mu_;
  // Set once, right after subscribing.
  std::shared_ptr<alerts::AlertSubscription> subscription_ ABSL_GUARDED_BY(mu_);
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
  v1::Alert message_ ABSL_GUARDED_BY(mu_);
};

}  // namespace

grpc::Status ToGrpcStatus(const absl::Status& status) {
  if (status.ok()) return grpc::Status::OK;
  return grpc::Status(static_cast<grpc::StatusCode>(status.code()),
                      std::string(status.message()));
}

absl::StatusOr<auth::Caller> AdmitCall(const auth::Authenticator& auth,
                                       grpc::ServerContextBase& context,
                                       absl::string_view method) {
  auth::CallCredentials credentials;
  if (auth.enabled()) {
    const auto [begin, end] = context.client_metadata().equal_range(
        grpc::string_ref("authorization"));
    for (auto it = begin; it != end; ++it) {
      credentials.authorization.push_back(
          absl::string_view(it->second.data(), it->second.size()));
    }
  }
  // The certificate's subject only when it can count (auth_context()
  // allocates).
  std::shared_ptr<const grpc::AuthContext> auth_context;
  std::string subject;
  if (auth.enabled() && auth.roles_from_client_cert() &&
      credentials.authorization.empty()) {
    auth_context = context.auth_context();
    if (auth_context != nullptr && auth_context->IsPeerAuthenticated()) {
      for (const grpc::string_ref& value :
           auth_context->FindPropertyValues(GRPC_X509_SUBJECT_PROPERTY_NAME)) {
        subject.assign(value.data(), value.size());
        break;
      }
    }
    credentials.client_cert_subject = subject;
  }
  absl::StatusOr<auth::Caller> caller = auth.Admit(method, credentials);
  if (!caller.ok()) LogRefusal(method, context, caller.status());
  return caller;
}

grpc::ServerUnaryReactor* DecisionService::Check(
    grpc::CallbackServerContext* context, const v1::CheckRequest* request,
    v1::CheckResponse* response) {
  return Unary(context, *auth_, gate_, kCheck,
               [this, request, response](const auth::Caller&) {
                 DeferredAnswer answer;
                 answer.decider = decider_;
                 answer.status = decider_->CheckDeferred(
                     *request, response, &answer.durable_ticket);
                 return answer;
               });
}

grpc::ServerUnaryReactor* DecisionService::Report(
    grpc::CallbackServerContext* context, const v1::ReportRequest* request,
    v1::ReportResponse* response) {
  return Unary(context, *auth_, gate_, kReport,
               [this, request, response](const auth::Caller&) {
                 DeferredAnswer answer;
                 answer.decider = decider_;
                 answer.status = decider_->ReportDeferred(
                     *request, response, &answer.durable_ticket);
                 return answer;
               });
}

grpc::ServerUnaryReactor* AdminService::SetBudget(
    grpc::CallbackServerContext* context, const v1::SetBudgetRequest* request,
    v1::SetBudgetResponse* response) {
  return Unary(context, *auth_, gate_, kSetBudget,
               [this, request, response](const auth::Caller& caller) {
                 return budgets_->SetBudget(*request, caller, response);
               });
}

grpc::ServerUnaryReactor* AdminService::GetBudget(
    grpc::CallbackServerContext* context, const v1::GetBudgetRequest* request,
    v1::GetBudgetResponse* response) {
  return Unary(context, *auth_, gate_, kGetBudget,
               [this, request, response](const auth::Caller&) {
                 return budgets_->GetBudget(*request, response);
               });
}

grpc::ServerUnaryReactor* AdminService::ListBudgets(
    grpc::CallbackServerContext* context, const v1::ListBudgetsRequest* request,
    v1::ListBudgetsResponse* response) {
  return Unary(context, *auth_, gate_, kListBudgets,
               [this, request, response](const auth::Caller&) {
                 return budgets_->ListBudgets(*request, response);
               });
}

grpc::ServerUnaryReactor* AdminService::DeleteBudget(
    grpc::CallbackServerContext* context,
    const v1::DeleteBudgetRequest* request,
    v1::DeleteBudgetResponse* response) {
  return Unary(context, *auth_, gate_, kDeleteBudget,
               [this, request, response](const auth::Caller& caller) {
                 return budgets_->DeleteBudget(*request, caller, response);
               });
}

grpc::ServerUnaryReactor* AdminService::ListAudit(
    grpc::CallbackServerContext* context, const v1::ListAuditRequest* request,
    v1::ListAuditResponse* response) {
  return Unary(context, *auth_, gate_, kListAudit,
               [this, request, response](const auth::Caller&) {
                 return budgets_->ListAudit(*request, response);
               });
}

grpc::ServerUnaryReactor* AdminService::PushPolicy(
    grpc::CallbackServerContext* context, const v1::PushPolicyRequest* request,
    v1::PushPolicyResponse* response) {
  return Unary(context, *auth_, gate_, kPushPolicy,
               [this, request, response](const auth::Caller& caller) {
                 return policies_->PushPolicy(*request, caller, response);
               });
}

grpc::ServerUnaryReactor* AdminService::GetPolicy(
    grpc::CallbackServerContext* context, const v1::GetPolicyRequest* request,
    v1::GetPolicyResponse* response) {
  return Unary(context, *auth_, gate_, kGetPolicy,
               [this, request, response](const auth::Caller&) {
                 return policies_->GetPolicy(*request, response);
               });
}

grpc::ServerUnaryReactor* AdminService::ListPolicyVersions(
    grpc::CallbackServerContext* context,
    const v1::ListPolicyVersionsRequest* request,
    v1::ListPolicyVersionsResponse* response) {
  return Unary(context, *auth_, gate_, kListPolicyVersions,
               [this, request, response](const auth::Caller&) {
                 return policies_->ListPolicyVersions(*request, response);
               });
}

grpc::ServerUnaryReactor* AdminService::ActivatePolicyVersion(
    grpc::CallbackServerContext* context,
    const v1::ActivatePolicyVersionRequest* request,
    v1::ActivatePolicyVersionResponse* response) {
  return Unary(context, *auth_, gate_, kActivatePolicyVersion,
               [this, request, response](const auth::Caller& caller) {
                 return policies_->ActivatePolicyVersion(*request, caller,
                                                         response);
               });
}

grpc::ServerUnaryReactor* AdminService::StopShadow(
    grpc::CallbackServerContext* context, const v1::StopShadowRequest* request,
    v1::StopShadowResponse* response) {
  return Unary(context, *auth_, gate_, kStopShadow,
               [this, request, response](const auth::Caller& caller) {
                 return policies_->StopShadow(*request, caller, response);
               });
}

grpc::ServerUnaryReactor* AdminService::GetShadowReport(
    grpc::CallbackServerContext* context,
    const v1::GetShadowReportRequest* request,
    v1::GetShadowReportResponse* response) {
  return Unary(context, *auth_, gate_, kGetShadowReport,
               [this, request, response](const auth::Caller&) {
                 return policies_->GetShadowReport(*request, response);
               });
}

grpc::ServerUnaryReactor* AdminService::CreateBackup(
    grpc::CallbackServerContext* context,
    const v1::CreateBackupRequest* request,
    v1::CreateBackupResponse* response) {
  return Unary(context, *auth_, gate_, kCreateBackup,
               [this, request, response](const auth::Caller& caller) {
                 if (backups_ == nullptr) {
                   return absl::FailedPreconditionError(
                       "backups are off: start bursard with --backup_dir=DIR "
                       "(a directory on the server that backups go into)");
                 }
                 return backups_->Create(*request, caller.name, response);
               });
}

grpc::ServerUnaryReactor* AdminService::ListAlerts(
    grpc::CallbackServerContext* context, const v1::ListAlertsRequest* request,
    v1::ListAlertsResponse* response) {
  return Unary(context, *auth_, gate_, kListAlerts,
               [this, request, response](const auth::Caller&) {
                 if (alerts_ == nullptr) {
                   return absl::UnimplementedError(
                       "alerts are not enabled on this server");
                 }
                 return alerts_->ListAlerts(*request, response);
               });
}

grpc::ServerWriteReactor<v1::Alert>* AdminService::WatchAlerts(
    grpc::CallbackServerContext* context, const v1::WatchAlertsRequest*) {
  absl::StatusOr<auth::Caller> caller =
      AdmitCall(*auth_, *context, kWatchAlerts);
  if (!caller.ok()) {
    return new WatchAlertsReactor(ToGrpcStatus(caller.status()));
  }
  if (alerts_ == nullptr) {
    return new WatchAlertsReactor(
        grpc::Status(grpc::StatusCode::UNIMPLEMENTED,
                     "alerts are not enabled on this server"));
  }
  return new WatchAlertsReactor(alerts_->hub());
}

namespace {

absl::Status NoUsage() {
  return absl::UnimplementedError("this server keeps no usage rollups");
}

}  // namespace

grpc::ServerUnaryReactor* AdminService::GetUsage(
    grpc::CallbackServerContext* context, const v1::GetUsageRequest* request,
    v1::GetUsageResponse* response) {
  return Unary(context, *auth_, gate_, kGetUsage,
               [this, request, response](const auth::Caller&) {
                 return usage_ != nullptr ? usage_->GetUsage(*request, response)
                                          : NoUsage();
               });
}

grpc::ServerUnaryReactor* AdminService::ReportSignal(
    grpc::CallbackServerContext* context,
    const v1::ReportSignalRequest* request,
    v1::ReportSignalResponse* response) {
  return Unary(context, *auth_, gate_, kReportSignal,
               [this, request, response](const auth::Caller& caller) {
                 return usage_ != nullptr ? usage_->ReportSignal(
                                                *request, caller.name, response)
                                          : NoUsage();
               });
}

grpc::ServerUnaryReactor* AdminService::ListSignals(
    grpc::CallbackServerContext* context, const v1::ListSignalsRequest* request,
    v1::ListSignalsResponse* response) {
  return Unary(context, *auth_, gate_, kListSignals,
               [this, request, response](const auth::Caller&) {
                 return usage_ != nullptr
                            ? usage_->ListSignals(*request, response)
                            : NoUsage();
               });
}

}  // namespace bursar::server
