#ifndef BURSAR_SERVER_AUTH_SHA256_H_
#define BURSAR_SERVER_AUTH_SHA256_H_

// SHA-256 digests of bearer tokens (OpenSSL libcrypto), their hex form, and
// the constant-time comparison bursard checks presented tokens with.

#include <array>
#include <cstdint>
#include <optional>
#include <string>

#include "absl/strings/string_view.h"

namespace bursar::server::auth {

using Sha256Digest = std::array<uint8_t, 32>;

Sha256Digest Sha256(absl::string_view data);

// 64 lowercase hex digits.
std::string DigestToHex(const Sha256Digest& digest);

// The digest written as 64 hex digits (either case); nullopt otherwise.
std::optional<Sha256Digest> DigestFromHex(absl::string_view hex);

// Equal digests, in time independent of where they differ (CRYPTO_memcmp).
bool DigestsEqual(const Sha256Digest& a, const Sha256Digest& b);

// A new random bearer token: "bst_" and 43 characters of base64url (256 bits
// from the OpenSSL CSPRNG).
std::string NewRandomToken();

}  // namespace bursar::server::auth

#endif  // BURSAR_SERVER_AUTH_SHA256_H_
