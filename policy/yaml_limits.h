#ifndef BURSAR_POLICY_YAML_LIMITS_H_
#define BURSAR_POLICY_YAML_LIMITS_H_

// How policy/ hands text to yaml-cpp: YAML::LoadAll within limits that keep
// a small file from taking the process down. Internal to policy/ (the loader
// and the policy-test reader); like yaml-cpp itself it reports by throwing,
// and its callers catch at the loader edge.
//
// The limits, documented in docs/policy-language.md ("Limits"):
// - kMaxYamlFileBytes per file: yaml-cpp builds a node of a few hundred bytes
//   for every value, so memory grows ~200x the size of the text;
// - kMaxYamlNestingDepth levels of lists and mappings: yaml-cpp's parser
//   recurses once per level;
// - a document must start with a value, a key or '---': on e.g. a stray ','
//   yaml-cpp 0.7's LoadAll loops forever, appending empty documents until
//   memory runs out (yaml-cpp issue 1040, fixed after 0.8).

#include <cstddef>
#include <string>
#include <vector>

#include "yaml-cpp/yaml.h"

namespace bursar::policy {

inline constexpr size_t kMaxYamlFileBytes = 256 * 1024;
inline constexpr int kMaxYamlNestingDepth = 64;

// Thrown for a text that may be valid YAML but breaks a size or depth limit;
// the message says which. The mark is null for an oversized file.
class YamlLimitExceeded : public YAML::ParserException {
 public:
  YamlLimitExceeded(const YAML::Mark& mark, const std::string& message)
      : YAML::ParserException(mark, message) {}
};

// The documents of `text`, as YAML::LoadAll returns them. Throws
// YamlLimitExceeded where `text` breaks a limit, and YAML::ParserException
// where it is not valid YAML.
std::vector<YAML::Node> LoadYamlWithinLimits(const std::string& text);

}  // namespace bursar::policy

#endif  // BURSAR_POLICY_YAML_LIMITS_H_
