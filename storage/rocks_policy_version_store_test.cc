// PolicyVersionStore on real RocksDB (OpenRocksStorage), with reopen: the
// versions, the active one and the audit log survive; a database written
// before the `policies` column family existed opens unchanged.

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/civil_time.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "rocksdb/db.h"
#include "rocksdb/options.h"
#include "storage/policy_version_store.h"
#include "storage/rocks_storage.h"
#include "tests/support/temp_dir.h"

namespace bursar::storage {
namespace {

using ::bursar::testing::TempDir;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Not;
using ::testing::SizeIs;

const absl::Time kT0 = absl::FromCivil(absl::CivilSecond(2026, 3, 18, 12, 0, 0),
                                       absl::UTCTimeZone());

PolicyVersion Version(std::string id, std::vector<PolicyFile> files,
                      std::string author = "ci",
                      std::string message = "a change") {
  PolicyVersion v;
  v.id = std::move(id);
  v.files = std::move(files);
  v.author = std::move(author);
  v.message = std::move(message);
  return v;
}

std::vector<std::string> Ids(const std::vector<PolicyVersion>& versions) {
  std::vector<std::string> ids;
  for (const PolicyVersion& v : versions) ids.push_back(v.id);
  return ids;
}

std::vector<std::string> Paths(const PolicyVersion& version) {
  std::vector<std::string> paths;
  for (const PolicyFile& f : version.files) paths.push_back(f.path);
  return paths;
}

// "action target by actor (reason) before -> after" for the audit entries.
std::vector<std::string> Describe(const std::vector<AuditEntry>& entries) {
  std::vector<std::string> out;
  for (const AuditEntry& e : entries) {
    out.push_back(e.action + " " + e.target + " by " + e.actor + " (" +
                  e.reason + ")");
  }
  return out;
}

class PolicyVersionStoreTest : public ::testing::Test {
 protected:
  void SetUp() override { Open(); }

  void Open() {
    RocksLedgerOptions options;
    options.path = dir_.path();
    options.sync = SyncMode::kGroup;
    absl::StatusOr<RocksStorage> storage = OpenRocksStorage(options);
    ASSERT_TRUE(storage.ok()) << storage.status();
    storage_ = *std::move(storage);
  }

  void Reopen() {
    storage_ = RocksStorage();
    Open();
  }

  PolicyVersionStore& store() { return *storage_.policy_versions; }

  PutPolicyResult Put(PolicyVersion version, bool activate = true,
                      absl::Time now = kT0,
                      const Actor& actor = Actor{"ci-bot", "release 42"}) {
    absl::StatusOr<PutPolicyResult> put =
        store().Put(std::move(version), activate, actor, now);
    EXPECT_TRUE(put.ok()) << put.status();
    return put.ok() ? *std::move(put) : PutPolicyResult();
  }

  std::vector<AuditEntry> Audit() { return storage_.ledger->ListAudit(100); }

  TempDir dir_;
  RocksStorage storage_;
};

TEST_F(PolicyVersionStoreTest, EmptyStoreHasNoActiveVersion) {
  EXPECT_EQ(store().ActiveVersion(), "");
  absl::StatusOr<std::vector<PolicyVersion>> list = store().List();
  ASSERT_TRUE(list.ok()) << list.status();
  EXPECT_THAT(*list, IsEmpty());
  EXPECT_EQ(store().Get("abc").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(store().Activate("abc", Actor{"dana", ""}, kT0).status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_THAT(Audit(), IsEmpty());
}

TEST_F(PolicyVersionStoreTest, PutStoresActivatesAndAudits) {
  const PutPolicyResult put =
      Put(Version("v1", {{"pricing.yaml", "p: 1\n"}, {"a/defaults.yaml", "d"}},
                  "alice", "first"));
  EXPECT_TRUE(put.created);
  EXPECT_EQ(put.previous_active, "");
  EXPECT_EQ(put.version.id, "v1");
  EXPECT_EQ(put.version.created_at, kT0);
  EXPECT_EQ(store().ActiveVersion(), "v1");

  absl::StatusOr<PolicyVersion> got = store().Get("v1");
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_THAT(Paths(*got), ElementsAre("a/defaults.yaml", "pricing.yaml"));
  EXPECT_EQ(got->files[1].content, "p: 1\n");
  EXPECT_EQ(got->author, "alice");
  EXPECT_EQ(got->message, "first");
  EXPECT_EQ(got->created_at, kT0);

  const std::vector<AuditEntry> audit = Audit();
  ASSERT_THAT(audit, SizeIs(1));
  EXPECT_EQ(audit[0].action, "policy.push");
  EXPECT_EQ(audit[0].target, "policy:v1");
  EXPECT_EQ(audit[0].actor, "ci-bot");
  EXPECT_EQ(audit[0].reason, "release 42");
  EXPECT_EQ(audit[0].time, kT0);
  EXPECT_EQ(audit[0].before_json, "");  // nothing was active
  EXPECT_THAT(audit[0].after_json, HasSubstr("\"version\":\"v1\""));
  EXPECT_THAT(audit[0].after_json, HasSubstr("\"author\":\"alice\""));
  EXPECT_THAT(audit[0].after_json,
              HasSubstr("\"created_at\":\"2026-03-18T12:00:00Z\""));
  EXPECT_FALSE(audit[0].before.has_value());
}

TEST_F(PolicyVersionStoreTest, PuttingTheSameVersionAgainChangesNothing) {
  Put(Version("v1", {{"p.yaml", "one"}}, "alice", "first"));
  const PutPolicyResult again =
      Put(Version("v1", {{"p.yaml", "one"}}, "bob", "again"), true,
          kT0 + absl::Hours(1));
  EXPECT_FALSE(again.created);
  EXPECT_EQ(again.previous_active, "v1");
  // The stored version is immutable: first author, message and time.
  EXPECT_EQ(again.version.author, "alice");
  EXPECT_EQ(again.version.message, "first");
  EXPECT_EQ(again.version.created_at, kT0);
  EXPECT_THAT(Audit(), SizeIs(1));
}

TEST_F(PolicyVersionStoreTest, NewerVersionsListFirstAndOldOnesReactivate) {
  Put(Version("v1", {{"p.yaml", "one"}}));
  const PutPolicyResult second =
      Put(Version("v2", {{"p.yaml", "two"}}), true, kT0 + absl::Minutes(5));
  EXPECT_TRUE(second.created);
  EXPECT_EQ(second.previous_active, "v1");
  EXPECT_EQ(store().ActiveVersion(), "v2");

  absl::StatusOr<std::vector<PolicyVersion>> list = store().List();
  ASSERT_TRUE(list.ok()) << list.status();
  EXPECT_THAT(Ids(*list), ElementsAre("v2", "v1"));
  EXPECT_THAT((*list)[0].files, IsEmpty());  // List leaves files out

  // Pushing v1's content again re-activates the stored v1.
  const PutPolicyResult back =
      Put(Version("v1", {{"p.yaml", "one"}}), true, kT0 + absl::Minutes(10));
  EXPECT_FALSE(back.created);
  EXPECT_EQ(back.previous_active, "v2");
  EXPECT_EQ(store().ActiveVersion(), "v1");
  const std::vector<AuditEntry> audit = Audit();
  ASSERT_THAT(audit, SizeIs(3));
  EXPECT_EQ(audit[0].target, "policy:v1");
  EXPECT_THAT(audit[0].before_json, HasSubstr("\"version\":\"v2\""));
  EXPECT_THAT(audit[0].after_json, HasSubstr("\"version\":\"v1\""));
}

TEST_F(PolicyVersionStoreTest, PutWithoutActivateOnlyStores) {
  Put(Version("v1", {{"p.yaml", "one"}}));
  const PutPolicyResult shadow = Put(Version("v2", {{"p.yaml", "two"}}),
                                     /*activate=*/false, kT0 + absl::Hours(1));
  EXPECT_TRUE(shadow.created);
  EXPECT_EQ(store().ActiveVersion(), "v1");
  EXPECT_TRUE(store().Get("v2").ok());
  const std::vector<AuditEntry> audit = Audit();
  ASSERT_THAT(audit, SizeIs(2));
  EXPECT_EQ(audit[0].target, "policy:v2");
  // The active version is the same before and after.
  EXPECT_THAT(audit[0].before_json, HasSubstr("\"version\":\"v1\""));
  EXPECT_EQ(audit[0].before_json, audit[0].after_json);
}

TEST_F(PolicyVersionStoreTest, ActivateIsARollbackAndIsAudited) {
  Put(Version("v1", {{"p.yaml", "one"}}));
  Put(Version("v2", {{"p.yaml", "two"}}), true, kT0 + absl::Minutes(1));
  absl::StatusOr<std::string> was = store().Activate(
      "v1", Actor{"dana", "v2 overcharges"}, kT0 + absl::Minutes(2));
  ASSERT_TRUE(was.ok()) << was.status();
  EXPECT_EQ(*was, "v2");
  EXPECT_EQ(store().ActiveVersion(), "v1");

  // Activating the active version again writes nothing.
  was = store().Activate("v1", Actor{"dana", "again"}, kT0 + absl::Minutes(3));
  ASSERT_TRUE(was.ok()) << was.status();
  EXPECT_EQ(*was, "v1");

  const std::vector<AuditEntry> audit = Audit();
  EXPECT_THAT(Describe(audit),
              ElementsAre("policy.activate policy:v1 by dana (v2 overcharges)",
                          "policy.push policy:v2 by ci-bot (release 42)",
                          "policy.push policy:v1 by ci-bot (release 42)"));
  EXPECT_THAT(audit[0].before_json, HasSubstr("\"version\":\"v2\""));
  EXPECT_THAT(audit[0].after_json, HasSubstr("\"version\":\"v1\""));

  EXPECT_EQ(store().Activate("v9", Actor{"dana", ""}, kT0).status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(store().ActiveVersion(), "v1");
}

TEST_F(PolicyVersionStoreTest, BadIdsAndOversizedVersionsAreRejected) {
  for (const std::string id :
       {std::string(), std::string("a/b"), std::string("a b"),
        std::string("v\n"), std::string(kMaxPolicyVersionIdBytes + 1, 'x')}) {
    const absl::StatusOr<PutPolicyResult> put =
        store().Put(Version(id, {{"p.yaml", "x"}}), true, Actor{}, kT0);
    EXPECT_EQ(put.status().code(), absl::StatusCode::kInvalidArgument) << id;
  }
  const absl::StatusOr<PutPolicyResult> big = store().Put(
      Version("big", {{"p.yaml", std::string(kMaxPolicyVersionBytes, 'x')}}),
      true, Actor{}, kT0);
  EXPECT_EQ(big.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(big.status().message(), HasSubstr("at most"));
  EXPECT_EQ(store().ActiveVersion(), "");
  EXPECT_THAT(*store().List(), IsEmpty());
  EXPECT_THAT(Audit(), IsEmpty());
}

TEST_F(PolicyVersionStoreTest, FilesAreKeptByteForByte) {
  const std::string binary("\xff\xfe\0yaml\r\n", 10);
  Put(Version("v1", {{"odd.yaml", binary}}));
  absl::StatusOr<PolicyVersion> got = store().Get("v1");
  ASSERT_TRUE(got.ok()) << got.status();
  ASSERT_THAT(got->files, SizeIs(1));
  EXPECT_EQ(got->files[0].content, binary);
}

TEST_F(PolicyVersionStoreTest, ReopenRestoresVersionsActiveAndAudit) {
  ASSERT_TRUE(storage_.ledger
                  ->SetBudget(
                      [] {
                        BudgetSpec spec;
                        spec.name = "org";
                        spec.amount_nanos = 100;
                        spec.period = Period::kDay;
                        spec.timezone = "UTC";
                        return spec;
                      }(),
                      Actor{"finance", "plan"}, kT0)
                  .ok());
  // Same instant as the budget change: the audit keys still differ.
  Put(Version("v1", {{"p.yaml", "one"}}, "alice", "first"));
  Put(Version("v2", {{"p.yaml", "two"}}), true, kT0 + absl::Minutes(1));
  ASSERT_TRUE(
      store()
          .Activate("v1", Actor{"dana", "rollback"}, kT0 + absl::Minutes(2))
          .ok());
  const std::vector<std::string> audit_before = Describe(Audit());
  ASSERT_THAT(audit_before, SizeIs(4));

  Reopen();
  EXPECT_EQ(store().ActiveVersion(), "v1");
  absl::StatusOr<std::vector<PolicyVersion>> list = store().List();
  ASSERT_TRUE(list.ok()) << list.status();
  EXPECT_THAT(Ids(*list), ElementsAre("v2", "v1"));
  absl::StatusOr<PolicyVersion> v1 = store().Get("v1");
  ASSERT_TRUE(v1.ok()) << v1.status();
  EXPECT_EQ(v1->author, "alice");
  EXPECT_EQ(v1->created_at, kT0);
  ASSERT_THAT(v1->files, SizeIs(1));
  EXPECT_EQ(v1->files[0].content, "one");
  EXPECT_EQ(Describe(Audit()), audit_before);

  // The audit sequence continues after the reopen: a change at an instant
  // already used gets a new key instead of overwriting an entry.
  ASSERT_TRUE(
      store()
          .Activate("v2", Actor{"dana", "forward"}, kT0 + absl::Minutes(2))
          .ok());
  EXPECT_THAT(Audit(), SizeIs(5));
  Reopen();
  EXPECT_EQ(store().ActiveVersion(), "v2");
}

TEST_F(PolicyVersionStoreTest, ShadowIsStoredReplacedClearedAndAudited) {
  // No shadow without an active version.
  EXPECT_EQ(
      store()
          .PutShadow(Version("v2", {{"p.yaml", "two"}}), Actor{"ci", ""}, kT0)
          .status()
          .code(),
      absl::StatusCode::kFailedPrecondition);
  Put(Version("v1", {{"p.yaml", "one"}}));
  // Nor may the active version shadow itself.
  EXPECT_EQ(
      store()
          .PutShadow(Version("v1", {{"p.yaml", "one"}}), Actor{"ci", ""}, kT0)
          .status()
          .code(),
      absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(store().ShadowVersion(), "");

  absl::StatusOr<PutPolicyResult> put =
      store().PutShadow(Version("v2", {{"p.yaml", "two"}}),
                        Actor{"ci", "try v2"}, kT0 + absl::Minutes(1));
  ASSERT_TRUE(put.ok()) << put.status();
  EXPECT_TRUE(put->created);
  EXPECT_EQ(put->previous_active, "v1");
  EXPECT_EQ(put->previous_shadow, "");
  EXPECT_EQ(store().ShadowVersion(), "v2");
  EXPECT_EQ(store().ActiveVersion(), "v1");
  ASSERT_TRUE(store().Get("v2").ok());

  // The same shadow again writes nothing; another one replaces it.
  put = store().PutShadow(Version("v2", {{"p.yaml", "two"}}),
                          Actor{"ci", "again"}, kT0 + absl::Minutes(2));
  ASSERT_TRUE(put.ok()) << put.status();
  EXPECT_FALSE(put->created);
  EXPECT_EQ(put->previous_shadow, "v2");
  put = store().PutShadow(Version("v3", {{"p.yaml", "three"}}),
                          Actor{"ci", "try v3"}, kT0 + absl::Minutes(3));
  ASSERT_TRUE(put.ok()) << put.status();
  EXPECT_EQ(put->previous_shadow, "v2");
  EXPECT_EQ(store().ShadowVersion(), "v3");

  absl::StatusOr<std::string> was =
      store().ClearShadow(Actor{"dana", "enough"}, kT0 + absl::Minutes(4));
  ASSERT_TRUE(was.ok()) << was.status();
  EXPECT_EQ(*was, "v3");
  EXPECT_EQ(store().ShadowVersion(), "");
  // Clearing no shadow writes nothing.
  was = store().ClearShadow(Actor{"dana", "again"}, kT0 + absl::Minutes(5));
  ASSERT_TRUE(was.ok()) << was.status();
  EXPECT_EQ(*was, "");

  const std::vector<AuditEntry> audit = Audit();
  EXPECT_THAT(Describe(audit),
              ElementsAre("policy.shadow.stop policy:v3 by dana (enough)",
                          "policy.shadow policy:v3 by ci (try v3)",
                          "policy.shadow policy:v2 by ci (try v2)",
                          "policy.push policy:v1 by ci-bot (release 42)"));
  EXPECT_THAT(audit[0].before_json, HasSubstr("\"shadow_version\":\"v3\""));
  EXPECT_THAT(audit[0].after_json, HasSubstr("\"shadow_version\":\"\""));
  EXPECT_THAT(audit[1].before_json, HasSubstr("\"shadow_version\":\"v2\""));
  EXPECT_THAT(audit[1].after_json, HasSubstr("\"shadow_version\":\"v3\""));
  // The active version stays v1 throughout.
  EXPECT_THAT(audit[1].after_json, HasSubstr("\"version\":\"v1\""));
}

TEST_F(PolicyVersionStoreTest, ActivatingTheShadowPromotesIt) {
  Put(Version("v1", {{"p.yaml", "one"}}));
  ASSERT_TRUE(
      store()
          .PutShadow(Version("v2", {{"p.yaml", "two"}}), Actor{"ci", ""}, kT0)
          .ok());
  ASSERT_TRUE(
      store()
          .PutShadow(Version("v3", {{"p.yaml", "three"}}), Actor{"ci", ""}, kT0)
          .ok());
  // Activating another version keeps the shadow.
  ASSERT_TRUE(store().Activate("v2", Actor{"dana", ""}, kT0).ok());
  EXPECT_EQ(store().ShadowVersion(), "v3");
  // Activating the shadow version clears it, in the same batch.
  absl::StatusOr<std::string> was =
      store().Activate("v3", Actor{"dana", "promote"}, kT0);
  ASSERT_TRUE(was.ok()) << was.status();
  EXPECT_EQ(*was, "v2");
  EXPECT_EQ(store().ActiveVersion(), "v3");
  EXPECT_EQ(store().ShadowVersion(), "");
  const std::vector<AuditEntry> audit = Audit();
  ASSERT_THAT(audit, Not(IsEmpty()));
  EXPECT_EQ(audit[0].action, "policy.activate");
  EXPECT_THAT(audit[0].before_json, HasSubstr("\"shadow_version\":\"v3\""));
  EXPECT_THAT(audit[0].after_json, HasSubstr("\"shadow_version\":\"\""));

  // So does a push that activates the shadow's content.
  ASSERT_TRUE(
      store()
          .PutShadow(Version("v4", {{"p.yaml", "four"}}), Actor{"ci", ""}, kT0)
          .ok());
  const PutPolicyResult put = Put(Version("v4", {{"p.yaml", "four"}}));
  EXPECT_EQ(put.previous_shadow, "v4");
  EXPECT_EQ(store().ActiveVersion(), "v4");
  EXPECT_EQ(store().ShadowVersion(), "");

  // Both keys survive a reopen.
  ASSERT_TRUE(
      store()
          .PutShadow(Version("v1", {{"p.yaml", "one"}}), Actor{"ci", ""}, kT0)
          .ok());
  Reopen();
  EXPECT_EQ(store().ActiveVersion(), "v4");
  EXPECT_EQ(store().ShadowVersion(), "v1");
}

// A data directory written before the `policies` column family existed
// (schema version 1 with six column families) opens as it is: the family is
// added empty, nothing else changes.
TEST(PolicyVersionStoreUpgradeTest, DatabaseWithoutPoliciesFamilyOpens) {
  TempDir dir;
  {
    rocksdb::DBOptions options;
    options.create_if_missing = true;
    options.create_missing_column_families = true;
    std::vector<rocksdb::ColumnFamilyDescriptor> descriptors;
    for (const char* name :
         {"default", "meta", "budgets", "counters", "holds", "audit"}) {
      descriptors.emplace_back(name, rocksdb::ColumnFamilyOptions());
    }
    std::vector<rocksdb::ColumnFamilyHandle*> handles;
    rocksdb::DB* raw = nullptr;
    ASSERT_TRUE(
        rocksdb::DB::Open(options, dir.path(), descriptors, &handles, &raw)
            .ok());
    std::unique_ptr<rocksdb::DB> db(raw);
    ASSERT_TRUE(
        db->Put(rocksdb::WriteOptions(), handles[1], "schema_version", "1")
            .ok());
    for (rocksdb::ColumnFamilyHandle* h : handles) {
      ASSERT_TRUE(db->DestroyColumnFamilyHandle(h).ok());
    }
  }
  RocksLedgerOptions options;
  options.path = dir.path();
  {
    absl::StatusOr<RocksStorage> storage = OpenRocksStorage(options);
    ASSERT_TRUE(storage.ok()) << storage.status();
    EXPECT_EQ(storage->policy_versions->ActiveVersion(), "");
    EXPECT_THAT(storage->ledger->ListBudgets(), IsEmpty());
  }
  std::vector<std::string> families;
  ASSERT_TRUE(rocksdb::DB::ListColumnFamilies(rocksdb::DBOptions(), dir.path(),
                                              &families)
                  .ok());
  EXPECT_THAT(families, ::testing::Contains("policies"));
  // The ledger alone opens it too.
  absl::StatusOr<std::unique_ptr<Ledger>> ledger = OpenRocksLedger(options);
  EXPECT_TRUE(ledger.ok()) << ledger.status();
}

}  // namespace
}  // namespace bursar::storage
