#include "server/policy_files.h"

#include <filesystem>
#include <fstream>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/support/temp_dir.h"

namespace bursar::server {
namespace {

using ::testing::ElementsAre;
using ::testing::Field;

void Write(const std::string& path, const std::string& content) {
  std::filesystem::create_directories(
      std::filesystem::path(path).parent_path());
  std::ofstream(path) << content;
}

TEST(ReadPolicyDirTest, ReadsYamlRecursivelySortedAndSkipsHiddenEntries) {
  testing::TempDir dir;
  Write(dir.Sub("b/rules.yaml"), "b");
  Write(dir.Sub("a.yml"), "a");
  Write(dir.Sub("notes.txt"), "not policy");
  Write(dir.Sub(".hidden.yaml"), "hidden");
  // A ConfigMap volume: the files are links into "..data", which links to
  // the current "..<timestamp>" copy.
  Write(dir.Sub("..2026_11_22_19_00_00.1/policy.yaml"), "configmap");
  std::filesystem::create_directory_symlink("..2026_11_22_19_00_00.1",
                                            dir.Sub("..data"));
  std::filesystem::create_symlink("..data/policy.yaml",
                                  dir.Sub("policy.yaml"));

  absl::StatusOr<std::vector<policy::SourceFile>> files =
      ReadPolicyDir(dir.path());
  ASSERT_TRUE(files.ok()) << files.status();
  EXPECT_THAT(*files,
              ElementsAre(Field(&policy::SourceFile::path, "a.yml"),
                          Field(&policy::SourceFile::path, "b/rules.yaml"),
                          Field(&policy::SourceFile::path, "policy.yaml")));
  EXPECT_EQ(files->back().content, "configmap");
}

TEST(ReadPolicyDirTest, SaysWhatIsMissing) {
  testing::TempDir dir;
  EXPECT_EQ(ReadPolicyDir(dir.Sub("nope")).status().code(),
            absl::StatusCode::kNotFound);
  Write(dir.Sub(".only-hidden.yaml"), "x");
  EXPECT_EQ(ReadPolicyDir(dir.path()).status().code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace bursar::server
