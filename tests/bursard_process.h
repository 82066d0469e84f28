#ifndef BURSAR_TESTS_BURSARD_PROCESS_H_
#define BURSAR_TESTS_BURSARD_PROCESS_H_

// Harness for integration tests that run the real bursard binary: a temp
// directory, a clock file for --testing_clock_file, and a bursard child
// process on a free port with gRPC stubs for its API.
//
// The paths of bursard and of policies/example are compiled into the harness
// (tests/CMakeLists.txt).

#include <sys/types.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "bursar/v1/admin.grpc.pb.h"
#include "bursar/v1/decision.grpc.pb.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "tests/support/temp_dir.h"

namespace bursar::testing {

using ::bursar::testing::TempDir;

// The file bursard reads its time from (--testing_clock_file). Set() replaces
// it atomically, so the server never reads half a timestamp.
class ClockFile {
 public:
  ClockFile(std::string path, absl::Time start);
  void Set(absl::Time t);
  void Advance(absl::Duration d) { Set(now_ + d); }
  absl::Time now() const { return now_; }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  absl::Time now_;
};

// A UTC instant from its civil fields, e.g. Utc(2026, 1, 15, 4, 30).
absl::Time Utc(int y, int mo, int d, int h = 0, int mi = 0, int s = 0);

struct BursardOptions {
  // Required: the ledger directory.
  std::string data_dir;
  // Empty: the repository's policies/example (pricing catalog + defaults).
  std::string policy_dir;
  std::string sync = "group";
  // Empty: the system clock.
  std::string clock_file;
  // More --flag=value arguments.
  std::vector<std::string> extra_flags;
  // Pass --insecure (plaintext on the loopback address, authentication off
  // unless extra_flags give --tokens_file). Tests of TLS set it to false and
  // give the TLS flags and channel_credentials.
  bool insecure = true;
  // How the harness's channel connects; null: plaintext.
  std::shared_ptr<grpc::ChannelCredentials> channel_credentials;
  grpc::ChannelArguments channel_arguments;
};

// One bursard child process. Start() runs it on 127.0.0.1:0 (gRPC and HTTP)
// and waits until
// it serves; the destructor SIGKILLs it if it still runs. The child also
// dies with the test (PR_SET_PDEATHSIG), so a crashed test leaves no server.
class BursardProcess {
 public:
  // `work_dir` holds the ready file and the server's log (stdout+stderr).
  BursardProcess(BursardOptions options, std::string work_dir);
  ~BursardProcess();
  BursardProcess(const BursardProcess&) = delete;
  BursardProcess& operator=(const BursardProcess&) = delete;

  // Starts bursard and waits (up to 20 s) until it has written its address
  // to the ready file, then connects. A failure carries the server's log.
  ::testing::AssertionResult Start();
  // Runs bursard expecting it to fail before it serves; returns its exit
  // code, or -1 if it served or did not exit within 20 s.
  int RunExpectingFailure();
  // SIGTERM, then waits (up to 20 s) for the exit; returns the exit code,
  // or -1 if it did not exit normally (killed by a signal, hung).
  int Terminate();
  // SIGKILL and reap: a crash.
  void Kill9();
  // Kill9 then Start on the same data dir and flags.
  ::testing::AssertionResult CrashAndRestart();

  bool running() const { return pid_ > 0; }
  const std::string& address() const { return address_; }
  // The HTTP side port's "127.0.0.1:PORT" (bursard runs with
  // --http_listen=127.0.0.1:0 unless extra_flags override it; empty when it
  // is off).
  const std::string& http_address() const { return http_address_; }
  // The whole log of every run of this object.
  std::string Log() const;

  v1::Decision::Stub& decision() { return *decision_; }
  v1::Admin::Stub& admin() { return *admin_; }
  const std::shared_ptr<grpc::Channel>& channel() const { return channel_; }

  // Unary calls with a 10 s deadline.
  grpc::Status Check(const v1::CheckRequest& request,
                     v1::CheckResponse* response);
  grpc::Status Report(const v1::ReportRequest& request,
                      v1::ReportResponse* response);
  grpc::Status SetBudget(const v1::SetBudgetRequest& request,
                         v1::SetBudgetResponse* response);
  grpc::Status GetBudget(const v1::GetBudgetRequest& request,
                         v1::GetBudgetResponse* response);
  grpc::Status ListBudgets(v1::ListBudgetsResponse* response);
  grpc::Status ListAudit(int limit, v1::ListAuditResponse* response);

 private:
  std::vector<std::string> Argv() const;
  // Forks and execs bursard; false if fork failed.
  bool Spawn();
  // waitpid with a deadline; the raw wait status, or -1 on timeout.
  int WaitForExit(absl::Duration timeout);

  const BursardOptions options_;
  const std::string ready_file_;
  const std::string log_file_;
  pid_t pid_ = -1;
  std::string address_;
  std::string http_address_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::Decision::Stub> decision_;
  std::unique_ptr<v1::Admin::Stub> admin_;
};

// Request builders for the common cases.
v1::CheckRequest MakeCheck(
    const std::string& model, int64_t input_tokens, int64_t max_output_tokens,
    std::vector<std::pair<std::string, std::string>> labels = {},
    const std::string& request_id = "");
v1::ReportRequest MakeReport(const std::string& reservation_id,
                             int64_t input_tokens, int64_t cached_input_tokens,
                             int64_t output_tokens);
v1::Budget MakeBudget(const std::string& name,
                      std::vector<std::pair<std::string, std::string>> selector,
                      v1::Period period, int64_t amount_nanos,
                      const std::string& timezone = "",
                      const std::string& per_label = "");

// "code 3: message", for failure messages.
std::string StatusText(const grpc::Status& status);

// Whole-file read and write for test fixtures.
std::string ReadFile(const std::string& path);
void WriteFile(const std::string& path, const std::string& content);

// policies/example's pricing.yaml with gpt-4.1's output price (USD per 1M
// tokens, e.g. "16.00") replaced.
std::string PricingWithGpt41Output(const std::string& usd);

// A client context with a 10 s deadline, for calls made through the stubs.
std::unique_ptr<grpc::ClientContext> Call();

// What a bursarctl run printed (stdout and stderr) and its exit status.
struct CliRun {
  std::string output;
  int exit_status = -1;
};

// Runs `bursarctl --server=SERVER --actor=ci ARGS` (ARGS as a shell would
// split them) from the binary at `bursarctl_path`.
CliRun RunBursarctl(const std::string& bursarctl_path,
                    const std::string& server, const std::string& args);

}  // namespace bursar::testing

// ASSERT/EXPECT that a grpc::Status is OK, printing code and message if not.
#define BURSAR_ASSERT_OK(expr)                                             \
  do {                                                                     \
    const ::grpc::Status _bursar_status = (expr);                          \
    ASSERT_TRUE(_bursar_status.ok())                                       \
        << #expr << ": " << ::bursar::testing::StatusText(_bursar_status); \
  } while (0)
#define BURSAR_EXPECT_OK(expr)                                             \
  do {                                                                     \
    const ::grpc::Status _bursar_status = (expr);                          \
    EXPECT_TRUE(_bursar_status.ok())                                       \
        << #expr << ": " << ::bursar::testing::StatusText(_bursar_status); \
  } while (0)

#endif  // BURSAR_TESTS_BURSARD_PROCESS_H_
