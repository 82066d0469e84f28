#include "server/auth/authenticator.h"

#include <algorithm>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "server/auth/method_table.h"
#include "server/auth/sha256.h"

namespace bursar::server::auth {
namespace {

// gRPC bounds metadata at 8 KiB by default; a token is far shorter.
constexpr size_t kMaxTokenBytes = 4096;

int HexDigit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

}  // namespace

absl::string_view Caller::ViaName() const {
  switch (via) {
    case Via::kToken:
      return "token";
    case Via::kCertificate:
      return "certificate";
    case Via::kNone:
      break;
  }
  return "none";
}

Authenticator::Authenticator(Options options, std::vector<TokenEntry> tokens)
    : options_(options),
      tokens_(
          std::make_shared<const std::vector<TokenEntry>>(std::move(tokens))) {}

void Authenticator::SetTokens(std::vector<TokenEntry> tokens) {
  auto fresh =
      std::make_shared<const std::vector<TokenEntry>>(std::move(tokens));
  absl::MutexLock lock(&mu_);
  tokens_ = std::move(fresh);
}

size_t Authenticator::token_count() const {
  absl::ReaderMutexLock lock(&mu_);
  return tokens_->size();
}

std::string Authenticator::NoCredentialsHint() const {
  std::string hint =
      "send the metadata `authorization: Bearer <token>` (bursarctl: "
      "--token, --token_file or $BURSAR_TOKEN)";
  if (options_.roles_from_client_cert) {
    absl::StrAppend(&hint,
                    ", or a client certificate whose subject's OU names a "
                    "role (",
                    RoleList(), ")");
  }
  return hint;
}

absl::StatusOr<Caller> Authenticator::FromToken(
    absl::string_view authorization) const {
  // RFC 6750: the scheme is case-insensitive; the token has no spaces.
  constexpr absl::string_view kScheme = "bearer ";
  if (authorization.size() <= kScheme.size() ||
      !absl::EqualsIgnoreCase(authorization.substr(0, kScheme.size()),
                              kScheme)) {
    return absl::UnauthenticatedError(
        "the authorization metadata must be `Bearer <token>`");
  }
  const absl::string_view token =
      absl::StripAsciiWhitespace(authorization.substr(kScheme.size()));
  if (token.empty() || token.size() > kMaxTokenBytes ||
      std::any_of(token.begin(), token.end(), [](char c) {
        return absl::ascii_isspace(static_cast<unsigned char>(c));
      })) {
    return absl::UnauthenticatedError(
        "the authorization metadata must be `Bearer <token>` with one "
        "token of at most 4096 characters");
  }
  const Sha256Digest digest = Sha256(token);
  std::shared_ptr<const std::vector<TokenEntry>> tokens;
  {
    absl::ReaderMutexLock lock(&mu_);
    tokens = tokens_;
  }
  // Every entry is compared, in constant time each, so the time taken does
  // not say which entry (if any) matched.
  const TokenEntry* found = nullptr;
  for (const TokenEntry& entry : *tokens) {
    if (DigestsEqual(entry.sha256, digest)) found = &entry;
  }
  if (found == nullptr) {
    return absl::UnauthenticatedError(
        "the bearer token is not in bursard's tokens file (--tokens_file): "
        "check that it was copied whole, or ask an admin for one");
  }
  Caller caller;
  caller.via = Caller::Via::kToken;
  caller.name = found->name;
  caller.role = found->role;
  return caller;
}

absl::StatusOr<Caller> Authenticator::FromCertificate(
    absl::string_view subject) const {
  absl::StatusOr<std::vector<std::pair<std::string, std::string>>> attributes =
      ParseDistinguishedName(subject);
  if (!attributes.ok()) {
    return absl::UnauthenticatedError(
        absl::StrCat("cannot read the client certificate's subject: ",
                     attributes.status().message()));
  }
  std::string common_name;
  std::vector<Role> roles;
  for (const auto& [key, value] : *attributes) {
    if (absl::EqualsIgnoreCase(key, "CN")) common_name = value;
    if (absl::EqualsIgnoreCase(key, "OU")) {
      if (absl::StatusOr<Role> role = ParseRole(value); role.ok()) {
        roles.push_back(*role);
      }
    }
  }
  if (roles.size() != 1) {
    return absl::UnauthenticatedError(absl::StrCat(
        "the client certificate's subject (", subject, ") has ",
        roles.empty() ? "no OU" : "more than one OU",
        " naming a role; bursard takes the role from exactly one OU (one "
        "of ",
        RoleList(), "), or send a bearer token"));
  }
  if (common_name.empty()) {
    return absl::UnauthenticatedError(
        absl::StrCat("the client certificate's subject (", subject,
                     ") has no CN; bursard names the caller by it"));
  }
  Caller caller;
  caller.via = Caller::Via::kCertificate;
  caller.name = common_name;
  caller.role = roles[0];
  return caller;
}

absl::StatusOr<Caller> Authenticator::Identify(
    const CallCredentials& credentials) const {
  if (credentials.authorization.size() > 1) {
    return absl::UnauthenticatedError(
        absl::StrCat("the call has ", credentials.authorization.size(),
                     " authorization metadata entries; send one"));
  }
  if (credentials.authorization.size() == 1) {
    return FromToken(credentials.authorization[0]);
  }
  if (options_.roles_from_client_cert &&
      !credentials.client_cert_subject.empty()) {
    return FromCertificate(credentials.client_cert_subject);
  }
  return absl::UnauthenticatedError(
      absl::StrCat("no credentials: ", NoCredentialsHint()));
}

absl::StatusOr<Caller> Authenticator::Admit(
    absl::string_view method, const CallCredentials& credentials) const {
  const MethodAccess* access = FindMethodAccess(method);
  if (access == nullptr) {
    // Fail closed: a method nobody listed is open to nobody.
    return absl::PermissionDeniedError(absl::StrCat(
        method, " has no entry in bursard's role table; nobody may call it"));
  }
  if (access->open || !options_.enabled) return Caller();
  absl::StatusOr<Caller> caller = Identify(credentials);
  if (!caller.ok()) return caller.status();
  if (!access->roles.Contains(caller->role)) {
    return absl::PermissionDeniedError(absl::StrCat(
        "\"", caller->name, "\" has the role ", RoleName(caller->role),
        ", which may not call ", method,
        "; it needs one of the roles: ", access->roles.ToString()));
  }
  return caller;
}

absl::StatusOr<std::vector<std::pair<std::string, std::string>>>
ParseDistinguishedName(absl::string_view name) {
  std::vector<std::pair<std::string, std::string>> attributes;
  size_t i = 0;
  while (i < name.size()) {
    // The attribute type, up to '='.
    const size_t eq = name.find('=', i);
    if (eq == absl::string_view::npos) {
      return absl::InvalidArgumentError(
          absl::StrCat("no '=' after \"", name.substr(i), "\""));
    }
    std::string key(absl::StripAsciiWhitespace(name.substr(i, eq - i)));
    if (key.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat("an empty attribute type at offset ", i));
    }
    // The value, up to an unescaped ',' or '+'.
    std::string value;
    size_t j = eq + 1;
    for (; j < name.size(); ++j) {
      const char c = name[j];
      if (c == ',' || c == '+') break;
      if (c != '\\') {
        value.push_back(c);
        continue;
      }
      if (j + 1 >= name.size()) {
        return absl::InvalidArgumentError("a '\\' at the end");
      }
      const char next = name[j + 1];
      if (j + 2 < name.size() && HexDigit(next) >= 0 &&
          HexDigit(name[j + 2]) >= 0) {
        value.push_back(
            static_cast<char>(HexDigit(next) << 4 | HexDigit(name[j + 2])));
        j += 2;
      } else if (absl::string_view(",+\"\\<>;=# ").find(next) !=
                 absl::string_view::npos) {
        value.push_back(next);
        j += 1;
      } else {
        return absl::InvalidArgumentError(
            absl::StrCat("an unknown escape \\", std::string(1, next)));
      }
    }
    attributes.emplace_back(std::move(key), std::move(value));
    i = j + 1;
  }
  return attributes;
}

}  // namespace bursar::server::auth
