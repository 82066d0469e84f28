#ifndef BURSAR_TESTS_SUPPORT_TEMP_DIR_H_
#define BURSAR_TESTS_SUPPORT_TEMP_DIR_H_

#include <string>

namespace bursar::testing {

// A fresh directory under the system temp dir, removed with everything in
// it when the object goes away. A failure to create it fails the test.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  const std::string& path() const { return path_; }
  // path()/name.
  std::string Sub(const std::string& name) const;

 private:
  std::string path_;
};

}  // namespace bursar::testing

#endif  // BURSAR_TESTS_SUPPORT_TEMP_DIR_H_
