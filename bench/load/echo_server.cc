// bursar-echo: the physical reference for bursard's throughput.
//
// Serves bursar.v1.Decision (Check and Report) from the same stack as bursard
// (gRPC callback API, default server threads, health service and reflection
// registered) and answers every call with a fixed, realistic answer of the
// size bursard gives for bursar-load's requests: an ALLOW with a model, a
// reservation id as long as bursard's, three budget standings (org, team,
// user), a policy version and an expiry. It does no other work, so
// bursard / bursar-echo in the same run is the share of the transport's
// capacity that bursard keeps.
//
//   bursar-echo --listen=127.0.0.1:0 --ready_file=/tmp/echo.addr

#include <pthread.h>
#include <signal.h>

#include <cstdio>
#include <fstream>
#include <memory>
#include <string>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/str_cat.h"
#include "bursar/v1/decision.grpc.pb.h"
#include "grpcpp/ext/proto_server_reflection_plugin.h"
#include "grpcpp/grpcpp.h"
#include "grpcpp/health_check_service_interface.h"

ABSL_FLAG(std::string, listen, "127.0.0.1:0",
          "host:port to serve on; port 0 picks a free port.");
ABSL_FLAG(std::string, ready_file, "",
          "If set, the bound address is written here once serving.");

namespace bursar::load {
namespace {

// What bursard answers an allowed Check of bursar-load (gpt-4.1-mini, 1,200
// input and 500 output tokens, labels team/user/app/env) that matches the
// three budgets bursar-load sets up.
v1::CheckResponse FixedCheckAnswer() {
  v1::CheckResponse answer;
  answer.set_verdict(v1::VERDICT_ALLOW);
  answer.set_model("gpt-4.1-mini");
  answer.set_max_output_tokens(500);
  // "r-" and 32 hex digits, as bursard's ledger makes them.
  answer.set_reservation_id("r-3f9c1a7e52b04d86a1e7c9035d2b6f48");
  answer.set_estimated_cost_nanos(1'280'000);
  // bursard's policy versions are 16 hex digits of a content hash.
  answer.set_policy_version("5c0e9a7d31f4b268");
  answer.set_reservation_expires_at("2026-11-22T16:46:00Z");
  struct Standing {
    const char* budget;
    const char* instance;
    const char* period_start;
    int64_t amount_nanos;
    int64_t spent_nanos;
  };
  for (const Standing& s :
       {Standing{"bench-org", "", "2026-11-01T00:00:00Z",
                 100'000'000'000'000'000, 4'900'000'000},
        Standing{"bench-team", "team-07", "2026-11-22T00:00:00Z",
                 10'000'000'000'000'000, 490'000'000},
        Standing{"bench-user", "user-000347", "2026-11-22T00:00:00Z",
                 1'000'000'000'000'000, 4'900'000}}) {
    v1::BudgetStanding* b = answer.add_budgets();
    b->set_budget(s.budget);
    b->set_instance(s.instance);
    b->set_period_start(s.period_start);
    b->set_amount_nanos(s.amount_nanos);
    b->set_spent_nanos(s.spent_nanos);
    b->set_held_nanos(1'280'000);
    b->set_remaining_nanos(s.amount_nanos - s.spent_nanos - 1'280'000);
  }
  return answer;
}

v1::ReportResponse FixedReportAnswer() {
  v1::ReportResponse answer;
  answer.set_cost_nanos(1'040'000);
  return answer;
}

class EchoDecisionService final : public v1::Decision::CallbackService {
 public:
  grpc::ServerUnaryReactor* Check(grpc::CallbackServerContext* context,
                                  const v1::CheckRequest* /*request*/,
                                  v1::CheckResponse* response) override {
    *response = check_answer_;
    grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
    reactor->Finish(grpc::Status::OK);
    return reactor;
  }

  grpc::ServerUnaryReactor* Report(grpc::CallbackServerContext* context,
                                   const v1::ReportRequest* /*request*/,
                                   v1::ReportResponse* response) override {
    *response = report_answer_;
    grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
    reactor->Finish(grpc::Status::OK);
    return reactor;
  }

 private:
  const v1::CheckResponse check_answer_ = FixedCheckAnswer();
  const v1::ReportResponse report_answer_ = FixedReportAnswer();
};

int Run() {
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  EchoDecisionService service;
  // The same builder settings as bursard.
  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  int port = 0;
  const std::string listen = absl::GetFlag(FLAGS_listen);
  builder.AddListeningPort(listen, grpc::InsecureServerCredentials(), &port);
  builder.RegisterService(&service);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (server == nullptr || port == 0) {
    std::fprintf(stderr, "bursar-echo: cannot listen on %s\n", listen.c_str());
    return 1;
  }
  const std::string bound =
      absl::StrCat(listen.substr(0, listen.rfind(':')), ":", port);
  std::fprintf(stderr, "bursar-echo: serving on %s\n", bound.c_str());
  if (const std::string path = absl::GetFlag(FLAGS_ready_file); !path.empty()) {
    {
      std::ofstream out(path + ".tmp");
      out << bound << "\n";
    }
    std::rename((path + ".tmp").c_str(), path.c_str());
  }

  int signal_number = 0;
  sigwait(&signals, &signal_number);
  server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
  server->Wait();
  return 0;
}

}  // namespace
}  // namespace bursar::load

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "No-op bursar.v1.Decision server (fixed answers): bursar-echo "
      "--listen=127.0.0.1:0 --ready_file=FILE");
  absl::ParseCommandLine(argc, argv);
  return bursar::load::Run();
}
