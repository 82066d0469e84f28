#include "tests/bursard_process.h"

#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/time/civil_time.h"

namespace bursar::testing {
namespace {

constexpr absl::Duration kStartTimeout = absl::Seconds(20);
constexpr absl::Duration kExitTimeout = absl::Seconds(20);
constexpr absl::Duration kRpcTimeout = absl::Seconds(10);

std::string DescribeWaitStatus(int status) {
  if (WIFEXITED(status)) return absl::StrCat("exit code ", WEXITSTATUS(status));
  if (WIFSIGNALED(status)) {
    return absl::StrCat("killed by signal ", WTERMSIG(status));
  }
  return absl::StrCat("wait status ", status);
}

void SetDeadline(grpc::ClientContext& context) {
  context.set_deadline(std::chrono::system_clock::now() +
                       absl::ToChronoSeconds(kRpcTimeout));
}

}  // namespace

ClockFile::ClockFile(std::string path, absl::Time start)
    : path_(std::move(path)) {
  Set(start);
}

void ClockFile::Set(absl::Time t) {
  now_ = t;
  const std::string tmp = path_ + ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    out << absl::FormatTime(absl::RFC3339_full, t, absl::UTCTimeZone()) << "\n";
  }
  if (std::rename(tmp.c_str(), path_.c_str()) != 0) {
    ADD_FAILURE() << "cannot replace the clock file " << path_;
  }
}

absl::Time Utc(int y, int mo, int d, int h, int mi, int s) {
  return absl::FromCivil(absl::CivilSecond(y, mo, d, h, mi, s),
                         absl::UTCTimeZone());
}

BursardProcess::BursardProcess(BursardOptions options, std::string work_dir)
    : options_(std::move(options)),
      ready_file_((std::filesystem::path(work_dir) / "bursard.ready").string()),
      log_file_((std::filesystem::path(work_dir) / "bursard.log").string()) {}

BursardProcess::~BursardProcess() {
  if (pid_ > 0) Kill9();
}

std::vector<std::string> BursardProcess::Argv() const {
  // BURSAR_TEST_BURSARD runs another build of bursard, e.g. the sanitized
  // one (tests/sanitizers/run.sh).
  const char* const other_bursard = std::getenv("BURSAR_TEST_BURSARD");
  std::vector<std::string> argv = {
      other_bursard != nullptr && *other_bursard != '\0' ? other_bursard
                                                         : BURSARD_PATH,
      "--listen=127.0.0.1:0",
      // The HTTP port too, so that parallel servers never share 8082.
      "--http_listen=127.0.0.1:0",
      absl::StrCat("--ready_file=", ready_file_),
      absl::StrCat("--data_dir=", options_.data_dir),
      absl::StrCat("--policy_dir=", options_.policy_dir.empty()
                                        ? std::string(BURSAR_POLICY_DIR)
                                        : options_.policy_dir),
      absl::StrCat("--sync=", options_.sync),
  };
  if (!options_.clock_file.empty()) {
    argv.push_back(absl::StrCat("--testing_clock_file=", options_.clock_file));
  }
  if (options_.insecure) argv.push_back("--insecure");
  for (const std::string& flag : options_.extra_flags) argv.push_back(flag);
  return argv;
}

bool BursardProcess::Spawn() {
  // Everything the child needs is built before fork: between fork and exec
  // only async-signal-safe calls are allowed.
  const std::vector<std::string> args = Argv();
  std::vector<char*> argv;
  for (const std::string& arg : args) {
    argv.push_back(const_cast<char*>(arg.c_str()));
  }
  argv.push_back(nullptr);
  const char* log_path = log_file_.c_str();
  const pid_t parent = getpid();

  {
    std::ofstream log(log_file_, std::ios::app);
    log << "=== bursard";
    for (const std::string& arg : args) log << " " << arg;
    log << "\n";
  }
  const pid_t pid = fork();
  if (pid < 0) return false;
  if (pid == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) _exit(126);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, nullptr);
    const int log = open(log_path, O_WRONLY | O_CREAT | O_APPEND, 0644);
    const int null = open("/dev/null", O_RDONLY);
    if (log >= 0) {
      dup2(log, STDOUT_FILENO);
      dup2(log, STDERR_FILENO);
    }
    if (null >= 0) dup2(null, STDIN_FILENO);
    execv(argv[0], argv.data());
    _exit(127);
  }
  pid_ = pid;
  return true;
}

int BursardProcess::WaitForExit(absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  while (true) {
    int status = 0;
    const pid_t done = waitpid(pid_, &status, WNOHANG);
    if (done == pid_) {
      pid_ = -1;
      return status;
    }
    if (done < 0) {  // not our child any more
      pid_ = -1;
      return -1;
    }
    if (absl::Now() > deadline) return -1;
    absl::SleepFor(absl::Milliseconds(10));
  }
}

::testing::AssertionResult BursardProcess::Start() {
  if (pid_ > 0) return ::testing::AssertionFailure() << "already running";
  std::remove(ready_file_.c_str());
  channel_.reset();
  decision_.reset();
  admin_.reset();
  address_.clear();
  http_address_.clear();
  if (!Spawn()) return ::testing::AssertionFailure() << "fork failed";

  const absl::Time deadline = absl::Now() + kStartTimeout;
  while (true) {
    int status = 0;
    if (waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      return ::testing::AssertionFailure()
             << "bursard exited before serving (" << DescribeWaitStatus(status)
             << "); its log:\n"
             << Log();
    }
    // bursard renames the ready file into place, so it is complete when it
    // exists.
    // Line 1: the gRPC address; then "http=host:port" when HTTP is on.
    const std::string ready = ReadFile(ready_file_);
    if (!ready.empty()) {
      for (absl::string_view line : absl::StrSplit(ready, '\n')) {
        line = absl::StripAsciiWhitespace(line);
        if (line.empty()) continue;
        if (absl::ConsumePrefix(&line, "http=")) {
          http_address_ = std::string(line);
        } else if (address_.empty()) {
          address_ = std::string(line);
        }
      }
      break;
    }
    if (absl::Now() > deadline) {
      Kill9();
      return ::testing::AssertionFailure() << "bursard did not serve within "
                                           << kStartTimeout << "; its log:\n"
                                           << Log();
    }
    absl::SleepFor(absl::Milliseconds(10));
  }

  channel_ = grpc::CreateCustomChannel(address_,
                                       options_.channel_credentials != nullptr
                                           ? options_.channel_credentials
                                           : grpc::InsecureChannelCredentials(),
                                       options_.channel_arguments);
  if (!channel_->WaitForConnected(std::chrono::system_clock::now() +
                                  absl::ToChronoSeconds(kStartTimeout))) {
    return ::testing::AssertionFailure()
           << "cannot connect to bursard at " << address_ << "; its log:\n"
           << Log();
  }
  decision_ = v1::Decision::NewStub(channel_);
  admin_ = v1::Admin::NewStub(channel_);
  return ::testing::AssertionSuccess();
}

int BursardProcess::RunExpectingFailure() {
  std::remove(ready_file_.c_str());
  if (!Spawn()) return -1;
  const int status = WaitForExit(kStartTimeout);
  if (status == -1) {
    Kill9();
    return -1;
  }
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

int BursardProcess::Terminate() {
  if (pid_ <= 0) return -1;
  decision_.reset();
  admin_.reset();
  channel_.reset();
  kill(pid_, SIGTERM);
  const int status = WaitForExit(kExitTimeout);
  if (status == -1) {
    if (pid_ > 0) Kill9();
    return -1;
  }
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

void BursardProcess::Kill9() {
  if (pid_ <= 0) return;
  decision_.reset();
  admin_.reset();
  channel_.reset();
  kill(pid_, SIGKILL);
  int status = 0;
  waitpid(pid_, &status, 0);
  pid_ = -1;
}

::testing::AssertionResult BursardProcess::CrashAndRestart() {
  Kill9();
  return Start();
}

std::string BursardProcess::Log() const { return ReadFile(log_file_); }

grpc::Status BursardProcess::Check(const v1::CheckRequest& request,
                                   v1::CheckResponse* response) {
  grpc::ClientContext context;
  SetDeadline(context);
  return decision_->Check(&context, request, response);
}

grpc::Status BursardProcess::Report(const v1::ReportRequest& request,
                                    v1::ReportResponse* response) {
  grpc::ClientContext context;
  SetDeadline(context);
  return decision_->Report(&context, request, response);
}

grpc::Status BursardProcess::SetBudget(const v1::SetBudgetRequest& request,
                                       v1::SetBudgetResponse* response) {
  grpc::ClientContext context;
  SetDeadline(context);
  return admin_->SetBudget(&context, request, response);
}

grpc::Status BursardProcess::GetBudget(const v1::GetBudgetRequest& request,
                                       v1::GetBudgetResponse* response) {
  grpc::ClientContext context;
  SetDeadline(context);
  return admin_->GetBudget(&context, request, response);
}

grpc::Status BursardProcess::ListBudgets(v1::ListBudgetsResponse* response) {
  grpc::ClientContext context;
  SetDeadline(context);
  return admin_->ListBudgets(&context, v1::ListBudgetsRequest(), response);
}

grpc::Status BursardProcess::ListAudit(int limit,
                                       v1::ListAuditResponse* response) {
  grpc::ClientContext context;
  SetDeadline(context);
  v1::ListAuditRequest request;
  request.set_limit(limit);
  return admin_->ListAudit(&context, request, response);
}

v1::CheckRequest MakeCheck(
    const std::string& model, int64_t input_tokens, int64_t max_output_tokens,
    std::vector<std::pair<std::string, std::string>> labels,
    const std::string& request_id) {
  v1::CheckRequest request;
  request.set_model(model);
  request.set_input_tokens(input_tokens);
  request.set_max_output_tokens(max_output_tokens);
  for (auto& [key, value] : labels) (*request.mutable_labels())[key] = value;
  request.set_request_id(request_id);
  return request;
}

v1::ReportRequest MakeReport(const std::string& reservation_id,
                             int64_t input_tokens, int64_t cached_input_tokens,
                             int64_t output_tokens) {
  v1::ReportRequest request;
  request.set_reservation_id(reservation_id);
  request.mutable_usage()->set_input_tokens(input_tokens);
  request.mutable_usage()->set_cached_input_tokens(cached_input_tokens);
  request.mutable_usage()->set_output_tokens(output_tokens);
  request.set_outcome(v1::OUTCOME_SUCCESS);
  return request;
}

v1::Budget MakeBudget(const std::string& name,
                      std::vector<std::pair<std::string, std::string>> selector,
                      v1::Period period, int64_t amount_nanos,
                      const std::string& timezone,
                      const std::string& per_label) {
  v1::Budget budget;
  budget.set_name(name);
  for (auto& [key, value] : selector) (*budget.mutable_selector())[key] = value;
  budget.set_period(period);
  budget.set_amount_nanos(amount_nanos);
  budget.set_timezone(timezone);
  budget.set_per_label(per_label);
  return budget;
}

std::unique_ptr<grpc::ClientContext> Call() {
  auto context = std::make_unique<grpc::ClientContext>();
  context->set_deadline(std::chrono::system_clock::now() +
                        std::chrono::seconds(10));
  return context;
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

void WriteFile(const std::string& path, const std::string& content) {
  std::ofstream(path, std::ios::binary | std::ios::trunc) << content;
}

std::string PricingWithGpt41Output(const std::string& usd) {
  std::string pricing =
      ReadFile(absl::StrCat(BURSAR_POLICY_DIR, "/pricing.yaml"));
  const size_t line = pricing.find("\n  gpt-4.1:");
  const size_t output = pricing.find("output: \"8.00\"", line);
  EXPECT_NE(line, std::string::npos);
  EXPECT_NE(output, std::string::npos);
  EXPECT_LT(output, pricing.find('\n', line + 1));
  pricing.replace(output, 14, absl::StrCat("output: \"", usd, "\""));
  return pricing;
}

CliRun RunBursarctl(const std::string& bursarctl_path,
                    const std::string& server, const std::string& args) {
  const std::string command = absl::StrCat(bursarctl_path, " --server=", server,
                                           " --actor=ci ", args, " 2>&1");
  CliRun run;
  FILE* pipe = popen(command.c_str(), "r");
  if (pipe == nullptr) return run;
  char buffer[4096];
  size_t n = 0;
  while ((n = fread(buffer, 1, sizeof(buffer), pipe)) > 0) {
    run.output.append(buffer, n);
  }
  const int status = pclose(pipe);
  run.exit_status = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return run;
}

std::string StatusText(const grpc::Status& status) {
  return absl::StrCat("code ", static_cast<int>(status.error_code()), ": ",
                      status.error_message());
}

}  // namespace bursar::testing
