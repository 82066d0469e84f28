#include "server/auth/sha256.h"

#include "absl/strings/match.h"
#include "gtest/gtest.h"

namespace bursar::server::auth {
namespace {

TEST(Sha256Test, KnownAnswer) {
  // FIPS 180-2 example "abc".
  EXPECT_EQ(DigestToHex(Sha256("abc")),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(DigestToHex(Sha256("")),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
}

TEST(Sha256Test, HexRoundTripAcceptsBothCases) {
  const Sha256Digest digest = Sha256("token");
  const std::string hex = DigestToHex(digest);
  ASSERT_EQ(DigestFromHex(hex), digest);
  std::string upper = hex;
  for (char& c : upper) c = static_cast<char>(std::toupper(c));
  EXPECT_EQ(DigestFromHex(upper), digest);
}

TEST(Sha256Test, HexRejectsWrongLengthAndNonHex) {
  const std::string hex = DigestToHex(Sha256("token"));
  EXPECT_FALSE(DigestFromHex(hex.substr(1)).has_value());
  EXPECT_FALSE(DigestFromHex(hex + "0").has_value());
  EXPECT_FALSE(DigestFromHex("").has_value());
  std::string bad = hex;
  bad[10] = 'g';
  EXPECT_FALSE(DigestFromHex(bad).has_value());
}

// DigestsEqual is CRYPTO_memcmp: the answer must be right wherever the
// digests differ (a comparison that stopped early or compared a prefix
// would miss a difference at the end).
TEST(Sha256Test, ConstantTimeCompareSeesADifferenceAnywhere) {
  const Sha256Digest digest = Sha256("token");
  EXPECT_TRUE(DigestsEqual(digest, digest));
  for (size_t i = 0; i < digest.size(); ++i) {
    for (uint8_t bit : {0x01, 0x80}) {
      Sha256Digest other = digest;
      other[i] ^= bit;
      EXPECT_FALSE(DigestsEqual(digest, other)) << "byte " << i;
    }
  }
}

TEST(Sha256Test, RandomTokensAreLongAndDistinct) {
  const std::string a = NewRandomToken();
  const std::string b = NewRandomToken();
  EXPECT_NE(a, b);
  EXPECT_TRUE(absl::StartsWith(a, "bst_")) << a;
  EXPECT_EQ(a.size(), 4u + 43u);
  for (char c : a.substr(4)) {
    EXPECT_TRUE(std::isalnum(static_cast<unsigned char>(c)) || c == '-' ||
                c == '_')
        << a;
  }
}

}  // namespace
}  // namespace bursar::server::auth
