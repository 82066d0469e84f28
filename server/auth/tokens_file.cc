#include "server/auth/tokens_file.h"

#include <cerrno>
#include <cstring>
#include <fstream>
#include <optional>
#include <sstream>

#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "yaml-cpp/yaml.h"

namespace bursar::server::auth {
namespace {

constexpr absl::string_view kHashHint =
    "the SHA-256 of the token as 64 hex digits (`bursarctl token hash` "
    "prints it)";

class Parser {
 public:
  explicit Parser(absl::string_view path) : path_(path) {}

  absl::StatusOr<std::vector<TokenEntry>> Parse(absl::string_view content);

 private:
  absl::Status Error(const YAML::Node& node, absl::string_view field,
                     absl::string_view message) const {
    return ErrorAt(node.Mark(), field, message);
  }
  absl::Status ErrorAt(const YAML::Mark& mark, absl::string_view field,
                       absl::string_view message) const {
    std::string where = path_;
    if (!mark.is_null()) {
      absl::StrAppend(&where, ":", mark.line + 1, ":", mark.column + 1);
    }
    return absl::InvalidArgumentError(
        absl::StrCat(where, ": ", field, field.empty() ? "" : ": ", message));
  }
  absl::StatusOr<TokenEntry> ParseEntry(const YAML::Node& node,
                                        const std::string& field);

  std::string path_;
};

bool ValidNameChar(char c) {
  return absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '.' ||
         c == '_' || c == '-' || c == '@' || c == ':';
}

absl::StatusOr<TokenEntry> Parser::ParseEntry(const YAML::Node& node,
                                              const std::string& field) {
  if (!node.IsMap()) {
    return Error(node, field, "expected a mapping with name, role and sha256");
  }
  TokenEntry entry;
  bool has_name = false, has_role = false, has_hash = false;
  for (const auto& item : node) {
    const YAML::Node& key = item.first;
    const YAML::Node& value = item.second;
    if (!key.IsScalar()) return Error(key, field, "keys must be words");
    const std::string name = key.Scalar();
    const std::string sub = absl::StrCat(field, ".", name);
    bool* seen = nullptr;
    if (name == "name") {
      seen = &has_name;
    } else if (name == "role") {
      seen = &has_role;
    } else if (name == "sha256") {
      seen = &has_hash;
    } else if (name == "token") {
      return Error(key, sub,
                   absl::StrCat("the tokens file holds no plaintext tokens; "
                                "remove it and give sha256: ",
                                kHashHint));
    } else {
      return Error(key, sub, "unknown key; expected name, role or sha256");
    }
    if (*seen) return Error(key, sub, "given twice");
    *seen = true;
    if (!value.IsScalar()) {
      return Error(value.IsNull() ? key : value, sub,
                   name == "role" ? absl::StrCat("expected one of ", RoleList())
                                  : std::string("expected a string"));
    }
    const std::string text = value.Scalar();
    if (name == "name") {
      if (text.empty() || text.size() > kMaxTokenNameBytes) {
        return Error(
            value, sub,
            absl::StrCat("must have 1 to ", kMaxTokenNameBytes, " characters"));
      }
      for (char c : text) {
        if (!ValidNameChar(c)) {
          return Error(value, sub,
                       "may contain only letters, digits and . _ - @ : (it "
                       "names the holder in the audit log)");
        }
      }
      entry.name = text;
    } else if (name == "role") {
      absl::StatusOr<Role> role = ParseRole(text);
      if (!role.ok()) return Error(value, sub, role.status().message());
      entry.role = *role;
    } else {
      std::optional<Sha256Digest> digest = DigestFromHex(text);
      if (!digest.has_value()) {
        return Error(value, sub, absl::StrCat("expected ", kHashHint));
      }
      entry.sha256 = *digest;
    }
  }
  if (!has_name) return Error(node, field, "missing name (who holds it)");
  if (!has_role) {
    return Error(node, field,
                 absl::StrCat("missing role: one of ", RoleList()));
  }
  if (!has_hash) {
    return Error(node, field, absl::StrCat("missing sha256: ", kHashHint));
  }
  return entry;
}

absl::StatusOr<std::vector<TokenEntry>> Parser::Parse(
    absl::string_view content) {
  if (content.size() > kMaxTokensFileBytes) {
    return absl::InvalidArgumentError(absl::StrCat(
        path_, ": ", content.size(), " bytes; at most ", kMaxTokensFileBytes));
  }
  YAML::Node root;
  try {
    root = YAML::Load(std::string(content));
  } catch (const YAML::Exception& e) {
    return ErrorAt(e.mark, "", absl::StrCat("not valid YAML: ", e.msg));
  }
  try {
    if (root.IsNull()) {
      return ErrorAt(YAML::Mark::null_mark(), "",
                     "empty; expected `tokens:` with a list of name, role "
                     "and sha256");
    }
    if (!root.IsMap()) {
      return Error(root, "", "expected a mapping with the key `tokens`");
    }
    std::optional<YAML::Node> tokens;
    for (const auto& item : root) {
      if (!item.first.IsScalar() || item.first.Scalar() != "tokens") {
        return Error(item.first, "",
                     item.first.IsScalar()
                         ? absl::StrCat("unknown key \"", item.first.Scalar(),
                                        "\"; expected tokens")
                         : std::string("expected the key tokens"));
      }
      if (tokens.has_value()) {
        return Error(item.first, "tokens", "given twice");
      }
      tokens = item.second;
    }
    if (!tokens.has_value()) {
      return Error(root, "", "missing the key tokens");
    }
    if (!tokens->IsSequence() || tokens->size() == 0) {
      return Error(*tokens, "tokens",
                   "expected a list of at least one entry with name, role "
                   "and sha256");
    }
    std::vector<TokenEntry> entries;
    absl::flat_hash_set<std::string> names;
    std::vector<Sha256Digest> digests;
    for (size_t i = 0; i < tokens->size(); ++i) {
      const YAML::Node node = (*tokens)[i];
      const std::string field = absl::StrCat("tokens[", i, "]");
      absl::StatusOr<TokenEntry> entry = ParseEntry(node, field);
      if (!entry.ok()) return entry.status();
      if (!names.insert(entry->name).second) {
        return Error(node["name"], absl::StrCat(field, ".name"),
                     absl::StrCat("\"", entry->name,
                                  "\" is given twice; every holder has a "
                                  "name of their own"));
      }
      for (const Sha256Digest& other : digests) {
        if (DigestsEqual(other, entry->sha256)) {
          return Error(node["sha256"], absl::StrCat(field, ".sha256"),
                       "the same token hash is given twice; give every "
                       "holder a token of their own");
        }
      }
      digests.push_back(entry->sha256);
      entries.push_back(*std::move(entry));
    }
    return entries;
  } catch (const YAML::Exception& e) {
    return ErrorAt(e.mark, "", absl::StrCat("cannot read: ", e.what()));
  }
}

}  // namespace

absl::StatusOr<std::vector<TokenEntry>> ParseTokensFile(
    absl::string_view content, absl::string_view path) {
  return Parser(path).Parse(content);
}

absl::StatusOr<std::vector<TokenEntry>> LoadTokensFile(
    const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    const int error = errno;
    const std::string message = absl::StrCat("cannot read the tokens file ",
                                             path, ": ", std::strerror(error));
    return error == ENOENT ? absl::NotFoundError(message)
                           : absl::FailedPreconditionError(message);
  }
  std::stringstream text;
  text << in.rdbuf();
  return ParseTokensFile(text.str(), path);
}

std::string TokensFileEntry(absl::string_view name, absl::string_view role,
                            absl::string_view token) {
  return absl::StrCat("  - name: ", name, "\n    role: ", role,
                      "\n    sha256: ", DigestToHex(Sha256(token)), "\n");
}

}  // namespace bursar::server::auth
