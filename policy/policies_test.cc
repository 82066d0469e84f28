// Golden run: every directory under policies/ compiles without errors and
// passes its own policy tests, exactly as `bursarctl policy test` runs them.

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "policy/loader.h"
#include "policy/policy_tests.h"

namespace bursar::policy {
namespace {

std::vector<SourceFile> ReadDir(const std::filesystem::path& dir) {
  std::vector<SourceFile> files;
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    if (entry.path().extension() != ".yaml") continue;
    std::ifstream in(entry.path());
    std::stringstream content;
    content << in.rdbuf();
    files.push_back({entry.path().filename().string(), content.str()});
  }
  return files;
}

std::vector<std::string> PolicyDirs() {
  std::vector<std::string> dirs;
  for (const auto& entry : std::filesystem::directory_iterator(
           std::filesystem::path(BURSAR_SOURCE_DIR) / "policies")) {
    if (entry.is_directory()) dirs.push_back(entry.path().filename().string());
  }
  return dirs;
}

class ShippedPolicyTest : public ::testing::TestWithParam<std::string> {};

TEST_P(ShippedPolicyTest, CompilesAndPassesItsTests) {
  const std::vector<SourceFile> files = ReadDir(
      std::filesystem::path(BURSAR_SOURCE_DIR) / "policies" / GetParam());
  CompileResult compiled = CompilePolicy(files);
  for (const Diagnostic& d : compiled.diagnostics) {
    ADD_FAILURE() << FormatDiagnostic(d);
  }
  ASSERT_NE(compiled.policy, nullptr);
  const PolicyTestReport report = RunPolicyTests(*compiled.policy, files);
  for (const Diagnostic& d : report.diagnostics) {
    ADD_FAILURE() << FormatDiagnostic(d);
  }
  for (const PolicyTestFailure& f : report.failures) {
    ADD_FAILURE() << FormatFailure(f);
  }
  EXPECT_EQ(report.passed, report.cases);
  if (GetParam() != "example") EXPECT_GT(report.cases, 0);
}

INSTANTIATE_TEST_SUITE_P(Policies, ShippedPolicyTest,
                         ::testing::ValuesIn(PolicyDirs()),
                         [](const auto& info) {
                           std::string name = info.param;
                           for (char& c : name) {
                             if (!isalnum(static_cast<unsigned char>(c)))
                               c = '_';
                           }
                           return name;
                         });

}  // namespace
}  // namespace bursar::policy
