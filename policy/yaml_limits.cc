#include "policy/yaml_limits.h"

#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "yaml-cpp/anchor.h"
#include "yaml-cpp/emitterstyle.h"
#include "yaml-cpp/eventhandler.h"
#include "yaml-cpp/yaml.h"

namespace bursar::policy {
namespace {

// Walks the YAML events of a text without building nodes, throwing where
// YAML::LoadAll would go wrong. Throwing from the event of the level past the
// limit stops the parser's recursion there, whatever depth guard the yaml-cpp
// in use has. A document starting where the previous one did is LoadAll's
// endless loop; a text that passes has finitely many documents, and LoadAll
// then parses it the same way.
class ShapeCheck final : public YAML::EventHandler {
 public:
  void OnDocumentStart(const YAML::Mark& mark) override {
    if (documents_ > 0 && mark.pos == last_document_pos_) {
      throw YAML::ParserException(
          mark, "unexpected character: expected a value, a key or '---'");
    }
    ++documents_;
    last_document_pos_ = mark.pos;
    depth_ = 0;
  }
  void OnDocumentEnd() override {}
  void OnNull(const YAML::Mark&, YAML::anchor_t) override {}
  void OnAlias(const YAML::Mark&, YAML::anchor_t) override {}
  void OnScalar(const YAML::Mark&, const std::string&, YAML::anchor_t,
                const std::string&) override {}
  void OnSequenceStart(const YAML::Mark& mark, const std::string&,
                       YAML::anchor_t, YAML::EmitterStyle::value) override {
    Enter(mark);
  }
  void OnSequenceEnd() override { --depth_; }
  void OnMapStart(const YAML::Mark& mark, const std::string&, YAML::anchor_t,
                  YAML::EmitterStyle::value) override {
    Enter(mark);
  }
  void OnMapEnd() override { --depth_; }

 private:
  void Enter(const YAML::Mark& mark) {
    if (++depth_ > kMaxYamlNestingDepth) {
      throw YamlLimitExceeded(
          mark, absl::StrCat("lists and mappings nest more than ",
                             kMaxYamlNestingDepth,
                             " levels deep here; a policy needs far fewer"));
    }
  }

  int documents_ = 0;
  int last_document_pos_ = -1;
  int depth_ = 0;
};

}  // namespace

std::vector<YAML::Node> LoadYamlWithinLimits(const std::string& text) {
  if (text.size() > kMaxYamlFileBytes) {
    throw YamlLimitExceeded(
        YAML::Mark::null_mark(),
        absl::StrCat("the file is ", text.size(),
                     " bytes; a policy file may "
                     "hold at most ",
                     kMaxYamlFileBytes / 1024,
                     " KiB, so split it into several files"));
  }
  {
    std::istringstream stream(text);
    YAML::Parser parser(stream);
    ShapeCheck check;
    while (parser.HandleNextDocument(check)) {
    }
  }
  return YAML::LoadAll(text);
}

}  // namespace bursar::policy
