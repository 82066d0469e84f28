#include "server/auth/authenticator.h"

#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"

namespace bursar::server::auth {
namespace {

constexpr char kCheck[] = "/bursar.v1.Decision/Check";
constexpr char kSetBudget[] = "/bursar.v1.Admin/SetBudget";
constexpr char kGetBudget[] = "/bursar.v1.Admin/GetBudget";
constexpr char kGetPolicy[] = "/bursar.v1.Admin/GetPolicy";
constexpr char kPushPolicy[] = "/bursar.v1.Admin/PushPolicy";
constexpr char kHealth[] = "/grpc.health.v1.Health/Check";

constexpr char kGatewayToken[] = "bst_gateway-secret-1";
constexpr char kFinanceToken[] = "bst_finance-secret-2";
constexpr char kViewerToken[] = "bst_viewer-secret-3";
constexpr char kPolicyToken[] = "bst_policy-secret-4";

std::vector<TokenEntry> Tokens() {
  return {{"gw-prod", Role::kGateway, Sha256(kGatewayToken)},
          {"dana", Role::kFinance, Sha256(kFinanceToken)},
          {"sre-dash", Role::kViewer, Sha256(kViewerToken)},
          {"ci", Role::kPolicyAdmin, Sha256(kPolicyToken)}};
}

std::string Bearer(absl::string_view token) {
  return absl::StrCat("Bearer ", token);
}

CallCredentials WithHeader(const std::string& header) {
  CallCredentials credentials;
  credentials.authorization.push_back(header);
  return credentials;
}

class AuthenticatorTest : public ::testing::Test {
 protected:
  absl::StatusOr<Caller> Admit(absl::string_view method,
                               const std::string& header) {
    return auth_.Admit(method, WithHeader(header));
  }

  Authenticator auth_{Authenticator::Options{}, Tokens()};
};

TEST_F(AuthenticatorTest, EachRoleReachesItsMethods) {
  absl::StatusOr<Caller> gateway = Admit(kCheck, Bearer(kGatewayToken));
  ASSERT_TRUE(gateway.ok()) << gateway.status();
  EXPECT_EQ(gateway->name, "gw-prod");
  EXPECT_EQ(gateway->role, Role::kGateway);
  EXPECT_EQ(gateway->via, Caller::Via::kToken);

  absl::StatusOr<Caller> finance = Admit(kSetBudget, Bearer(kFinanceToken));
  ASSERT_TRUE(finance.ok()) << finance.status();
  EXPECT_EQ(finance->name, "dana");
  EXPECT_EQ(finance->role, Role::kFinance);
  // finance implies viewer.
  EXPECT_TRUE(Admit(kGetPolicy, Bearer(kFinanceToken)).ok());
  EXPECT_TRUE(Admit(kPushPolicy, Bearer(kPolicyToken)).ok());
  EXPECT_TRUE(Admit(kGetBudget, Bearer(kPolicyToken)).ok());
  EXPECT_TRUE(Admit(kGetBudget, Bearer(kViewerToken)).ok());
}

TEST_F(AuthenticatorTest, WrongRoleIsPermissionDeniedWithoutTheToken) {
  struct Case {
    const char* method;
    const char* token;
  } cases[] = {
      {kSetBudget, kGatewayToken},  {kGetBudget, kGatewayToken},
      {kSetBudget, kViewerToken},   {kSetBudget, kPolicyToken},
      {kPushPolicy, kFinanceToken}, {kCheck, kFinanceToken},
      {kCheck, kViewerToken},
  };
  for (const Case& c : cases) {
    const absl::Status status = Admit(c.method, Bearer(c.token)).status();
    EXPECT_EQ(status.code(), absl::StatusCode::kPermissionDenied)
        << c.method << " " << status;
    EXPECT_TRUE(absl::StrContains(status.message(), c.method)) << status;
    EXPECT_FALSE(absl::StrContains(status.message(), c.token)) << status;
  }
  const absl::Status status = Admit(kSetBudget, Bearer(kGatewayToken)).status();
  EXPECT_TRUE(absl::StrContains(status.message(),
                                "\"gw-prod\" has the role "
                                "gateway"))
      << status;
  EXPECT_TRUE(absl::StrContains(status.message(), "finance")) << status;
}

TEST_F(AuthenticatorTest, MissingOrBadCredentialsAreUnauthenticated) {
  const absl::Status none = auth_.Admit(kCheck, CallCredentials()).status();
  EXPECT_EQ(none.code(), absl::StatusCode::kUnauthenticated);
  EXPECT_TRUE(absl::StrContains(none.message(), "Bearer <token>")) << none;

  const std::string secret = "bst_not-in-the-file-9";
  for (const std::string& header :
       {Bearer(secret), absl::StrCat("Basic ", secret), std::string("Bearer"),
        std::string("Bearer "), absl::StrCat("Bearer ", secret, " extra"),
        secret, Bearer(std::string(5000, 'x'))}) {
    const absl::Status status = Admit(kCheck, header).status();
    EXPECT_EQ(status.code(), absl::StatusCode::kUnauthenticated) << header;
    EXPECT_FALSE(absl::StrContains(status.message(), secret)) << status;
  }
  CallCredentials two;
  const std::string a = Bearer(kGatewayToken);
  two.authorization = {a, a};
  const absl::Status twice = auth_.Admit(kCheck, two).status();
  EXPECT_EQ(twice.code(), absl::StatusCode::kUnauthenticated);
  EXPECT_FALSE(absl::StrContains(twice.message(), kGatewayToken)) << twice;
}

TEST_F(AuthenticatorTest, SchemeIsCaseInsensitive) {
  EXPECT_TRUE(Admit(kCheck, absl::StrCat("bearer ", kGatewayToken)).ok());
  EXPECT_TRUE(Admit(kCheck, absl::StrCat("BEARER ", kGatewayToken)).ok());
}

TEST_F(AuthenticatorTest, OpenMethodsNeedNothing) {
  absl::StatusOr<Caller> caller = auth_.Admit(kHealth, CallCredentials());
  ASSERT_TRUE(caller.ok()) << caller.status();
  EXPECT_FALSE(caller->authenticated());
}

TEST_F(AuthenticatorTest, MethodsMissingFromTheTableAreClosedToEveryone) {
  const absl::Status status =
      Admit("/bursar.v1.Admin/Refund", Bearer(kFinanceToken)).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kPermissionDenied);
  Authenticator off(Authenticator::Options{.enabled = false}, {});
  EXPECT_EQ(
      off.Admit("/bursar.v1.Admin/Refund", CallCredentials()).status().code(),
      absl::StatusCode::kPermissionDenied);
}

TEST_F(AuthenticatorTest, DisabledLetsEveryoneCallEverything) {
  Authenticator off(Authenticator::Options{.enabled = false}, {});
  for (const char* method : {kCheck, kSetBudget, kPushPolicy}) {
    absl::StatusOr<Caller> caller = off.Admit(method, CallCredentials());
    ASSERT_TRUE(caller.ok()) << caller.status();
    EXPECT_FALSE(caller->authenticated());
  }
}

TEST_F(AuthenticatorTest, ReloadedTokensReplaceTheOldOnes) {
  auth_.SetTokens({{"new-gw", Role::kGateway, Sha256("bst_new")}});
  EXPECT_EQ(auth_.token_count(), 1u);
  EXPECT_EQ(Admit(kCheck, Bearer(kGatewayToken)).status().code(),
            absl::StatusCode::kUnauthenticated);
  absl::StatusOr<Caller> caller = Admit(kCheck, Bearer("bst_new"));
  ASSERT_TRUE(caller.ok()) << caller.status();
  EXPECT_EQ(caller->name, "new-gw");
}

TEST_F(AuthenticatorTest, TheLastOfManyTokensIsFound) {
  std::vector<TokenEntry> tokens;
  for (int i = 0; i < 100; ++i) {
    tokens.push_back(
        {absl::StrCat("t", i), Role::kViewer, Sha256(absl::StrCat("bst_", i))});
  }
  auth_.SetTokens(tokens);
  for (int i : {0, 50, 99}) {
    absl::StatusOr<Caller> caller =
        Admit(kGetBudget, Bearer(absl::StrCat("bst_", i)));
    ASSERT_TRUE(caller.ok()) << caller.status();
    EXPECT_EQ(caller->name, absl::StrCat("t", i));
  }
}

TEST(AuthenticatorCertTest, RoleFromTheClientCertificate) {
  Authenticator auth(
      Authenticator::Options{.enabled = true, .roles_from_client_cert = true},
      Tokens());
  CallCredentials cert;
  cert.client_cert_subject = "CN=ops-ci,OU=policy-admin,O=Example Corp";
  absl::StatusOr<Caller> caller = auth.Admit(kPushPolicy, cert);
  ASSERT_TRUE(caller.ok()) << caller.status();
  EXPECT_EQ(caller->name, "ops-ci");
  EXPECT_EQ(caller->role, Role::kPolicyAdmin);
  EXPECT_EQ(caller->via, Caller::Via::kCertificate);
  EXPECT_EQ(auth.Admit(kSetBudget, cert).status().code(),
            absl::StatusCode::kPermissionDenied);

  // A token, when sent, decides.
  CallCredentials both = cert;
  const std::string header = Bearer(kFinanceToken);
  both.authorization.push_back(header);
  caller = auth.Admit(kSetBudget, both);
  ASSERT_TRUE(caller.ok()) << caller.status();
  EXPECT_EQ(caller->name, "dana");

  for (const char* subject :
       {"CN=x,OU=engineering", "CN=x,OU=finance,OU=viewer", "OU=finance",
        "CN=x,OU=Finance", "not a dn"}) {
    CallCredentials bad;
    bad.client_cert_subject = subject;
    EXPECT_EQ(auth.Admit(kGetBudget, bad).status().code(),
              absl::StatusCode::kUnauthenticated)
        << subject;
  }
  // An OU that is no role next to one that is: the role one counts.
  CallCredentials mixed;
  mixed.client_cert_subject = "CN=x,OU=engineering,OU=viewer";
  EXPECT_TRUE(auth.Admit(kGetBudget, mixed).ok());
}

TEST(AuthenticatorCertTest, CertificatesCountOnlyWhenAskedFor) {
  Authenticator auth(Authenticator::Options{}, Tokens());
  CallCredentials cert;
  cert.client_cert_subject = "CN=ops-ci,OU=finance";
  EXPECT_EQ(auth.Admit(kGetBudget, cert).status().code(),
            absl::StatusCode::kUnauthenticated);
}

TEST(DistinguishedNameTest, UndoesEscapes) {
  auto parsed = ParseDistinguishedName(
      "CN=Smith\\, Dana,OU=finance+OU=viewer,O=A\\2B\\3DB,C=US");
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  const std::vector<std::pair<std::string, std::string>> expected = {
      {"CN", "Smith, Dana"},
      {"OU", "finance"},
      {"OU", "viewer"},
      {"O", "A+=B"},
      {"C", "US"}};
  EXPECT_EQ(*parsed, expected);
  EXPECT_FALSE(ParseDistinguishedName("CN=a,novalue").ok());
  EXPECT_FALSE(ParseDistinguishedName("CN=a\\").ok());
  EXPECT_FALSE(ParseDistinguishedName("=x").ok());
}

}  // namespace
}  // namespace bursar::server::auth
