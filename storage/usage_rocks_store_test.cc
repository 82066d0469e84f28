// The usage store on real RocksDB (OpenRocksStorage): rollups written in the
// ledger's settlement batch, their totals to the nano, hour boundaries,
// expiries, signals, and all of it after a reopen.

#include <cstdint>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "absl/time/civil_time.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "rocksdb/db.h"
#include "rocksdb/options.h"
#include "storage/counter_set.h"
#include "storage/int64_add_operator.h"
#include "storage/ledger.h"
#include "storage/rocks_storage.h"
#include "storage/usage_store.h"
#include "tests/support/temp_dir.h"

namespace bursar::storage {
namespace {

using ::bursar::testing::TempDir;

const absl::Time kT0 = absl::FromCivil(absl::CivilSecond(2026, 3, 18, 12, 0, 0),
                                       absl::UTCTimeZone());

class UsageStoreTest : public ::testing::Test {
 protected:
  void SetUp() override { Open(); }

  void Open() {
    storage_ = RocksStorage();
    RocksLedgerOptions options;
    options.path = dir_.path();
    options.sync = SyncMode::kNone;
    absl::StatusOr<RocksStorage> storage = OpenRocksStorage(options);
    ASSERT_TRUE(storage.ok()) << storage.status();
    storage_ = *std::move(storage);
  }

  void SetBudget(const std::string& name, const std::string& per_label = "") {
    BudgetSpec spec;
    spec.name = name;
    spec.per_label = per_label;
    spec.amount_nanos = int64_t{1000} * 1000 * 1000 * 1000;
    ASSERT_TRUE(storage_.ledger->SetBudget(spec, Actor{"test"}, kT0).ok());
  }

  // Reserves and settles one call of `cost` at `now`; returns its hold.
  HoldView Call(const std::string& user, int64_t cost, absl::Time now,
                const std::string& model = "gpt-4.1") {
    LabelSet labels;
    labels.Add("user", user);
    labels.Add("team", "search");
    ReserveRequest request;
    request.labels = &labels;
    request.estimate_nanos = cost * 2;
    absl::StatusOr<ReserveResult> reserved =
        storage_.ledger->Reserve(request, now);
    EXPECT_TRUE(reserved.ok()) << reserved.status();
    absl::StatusOr<HoldView> hold =
        storage_.ledger->GetHold(reserved->reservation_id);
    EXPECT_TRUE(hold.ok());
    UsageUpdate update = UpdateFor(*hold, model, user, now);
    update.counts.cost_nanos = cost;
    update.counts.requests = 1;
    update.counts.successes = 1;
    update.counts.input_tokens = 100;
    update.counts.output_tokens = 10;
    update.counts.latency_reports = 1;
    update.counts.latency_histogram[LatencyBucket(absl::Milliseconds(300))] = 1;
    EXPECT_TRUE(
        storage_.ledger->Settle(hold->reservation_id, cost, now, &update, {}, nullptr).ok());
    return *hold;
  }

  static UsageUpdate UpdateFor(const HoldView& hold, const std::string& model,
                               const std::string& user, absl::Time now) {
    UsageUpdate update;
    update.time = now;
    update.model = model;
    update.provider = "openai";
    update.dimensions = {{"team", "search"}, {"user", user}};
    update.budgets = hold.charges;
    return update;
  }

  // The sum of the rows with `budget` over [start, end).
  UsageCounts Total(absl::string_view budget, absl::Time start,
                    absl::Time end) {
    absl::StatusOr<std::vector<UsageRow>> rows =
        storage_.usage->Rows(start, end);
    EXPECT_TRUE(rows.ok()) << rows.status();
    UsageCounts total;
    if (!rows.ok()) return total;
    for (const UsageRow& row : *rows) {
      if (row.key.budget == budget) total.Add(row.counts);
    }
    return total;
  }

  TempDir dir_;
  RocksStorage storage_;
};

TEST_F(UsageStoreTest, SettlementRollupsEqualSettledCostsAcrossReopen) {
  SetBudget("org");
  SetBudget("per-user", "user");
  std::mt19937_64 random(7);
  int64_t sum = 0;
  int64_t alice = 0;
  for (int i = 0; i < 200; ++i) {
    const int64_t cost = static_cast<int64_t>(random() % 123456789) + 1;
    const std::string user = i % 3 == 0 ? "alice" : "bob";
    Call(user, cost, kT0 + absl::Minutes(i));
    sum += cost;
    if (user == "alice") alice += cost;
  }
  const absl::Time end = kT0 + absl::Hours(5);
  for (int pass = 0; pass < 2; ++pass) {
    EXPECT_EQ(Total("", kT0, end).cost_nanos, sum);
    EXPECT_EQ(Total("", kT0, end).requests, 200);
    EXPECT_EQ(Total("org", kT0, end).cost_nanos, sum);
    EXPECT_EQ(Total("per-user", kT0, end).cost_nanos, sum);
    absl::StatusOr<std::vector<std::pair<absl::Time, UsageCounts>>> kpi =
        storage_.usage->KpiRows("per-user", "alice", kT0, end);
    ASSERT_TRUE(kpi.ok()) << kpi.status();
    ASSERT_EQ(kpi->size(), 4u);  // 200 minutes: hours 12, 13, 14, 15
    UsageCounts alice_total;
    for (const auto& [hour, counts] : *kpi) alice_total.Add(counts);
    EXPECT_EQ(alice_total.cost_nanos, alice);
    EXPECT_EQ(
        alice_total.latency_histogram[LatencyBucket(absl::Milliseconds(300))],
        alice_total.requests);
    Open();  // the same figures after a reopen
  }
}

TEST_F(UsageStoreTest, RepeatedSettleAddsNothing) {
  SetBudget("org");
  const HoldView hold = Call("alice", 500, kT0);
  UsageUpdate update = UpdateFor(hold, "gpt-4.1", "alice", kT0);
  update.counts.cost_nanos = 500;
  update.counts.requests = 1;
  absl::StatusOr<SettleResult> again =
      storage_.ledger->Settle(hold.reservation_id, 500, kT0, &update, {}, nullptr);
  ASSERT_TRUE(again.ok());
  EXPECT_TRUE(again->already_reported);
  EXPECT_EQ(Total("", kT0, kT0 + absl::Hours(1)).cost_nanos, 500);
  EXPECT_EQ(Total("", kT0, kT0 + absl::Hours(1)).requests, 1);
}

TEST_F(UsageStoreTest, RowsKeepTheirKeysAndHours) {
  SetBudget("org");
  Call("alice", 10, kT0 + absl::Minutes(5), "gpt-4.1");
  Call("bob", 20, kT0 + absl::Minutes(65), "gpt-4.1-mini");
  absl::StatusOr<std::vector<UsageRow>> rows =
      storage_.usage->Rows(kT0, kT0 + absl::Hours(2));
  ASSERT_TRUE(rows.ok());
  ASSERT_EQ(rows->size(), 4u);  // 2 calls x (call row + org row)
  const UsageRow& first = rows->front();
  EXPECT_EQ(first.key.hour, kT0);
  EXPECT_EQ(first.key.budget, "");
  EXPECT_EQ(first.key.model, "gpt-4.1");
  EXPECT_EQ(first.key.provider, "openai");
  ASSERT_EQ(first.key.dimensions.size(), 2u);
  EXPECT_EQ(first.key.dimensions[1].second, "alice");
  EXPECT_EQ(rows->back().key.hour, kT0 + absl::Hours(1));
  EXPECT_EQ(rows->back().key.model, "gpt-4.1-mini");
  // An hour belongs to a range when it starts inside it.
  EXPECT_EQ(Total("", kT0, kT0 + absl::Hours(1)).cost_nanos, 10);
  EXPECT_EQ(Total("", kT0 + absl::Minutes(1), kT0 + absl::Hours(2)).cost_nanos,
            20);
  EXPECT_EQ(Total("", kT0, kT0 + absl::Minutes(61)).cost_nanos, 30);
  EXPECT_EQ(Total("", kT0 + absl::Hours(2), kT0).cost_nanos, 0);
}

TEST_F(UsageStoreTest, RecordedExpiriesSurviveReopen) {
  SetBudget("org");
  UsageUpdate update;
  update.time = kT0;
  update.model = "gpt-4.1";
  update.budgets = {{"org", ""}};
  update.counts.expired = 1;
  update.counts.expired_estimate_nanos = 777;
  ASSERT_TRUE(storage_.usage->Record(update).ok());
  Open();
  const UsageCounts total = Total("org", kT0, kT0 + absl::Hours(1));
  EXPECT_EQ(total.expired, 1);
  EXPECT_EQ(total.expired_estimate_nanos, 777);
  EXPECT_EQ(total.requests, 0);
}

TEST_F(UsageStoreTest, SignalsKeepTheLastValueAcrossReopen) {
  EXPECT_FALSE(storage_.usage->GetSignal("golden-accuracy").has_value());
  ASSERT_TRUE(storage_.usage
                  ->PutSignal({"golden-accuracy", 0.97, "model:gpt-4.1-mini",
                               kT0, "eval-job"})
                  .ok());
  ASSERT_TRUE(storage_.usage
                  ->PutSignal({"golden-accuracy", 0.93, "model:gpt-4.1-mini",
                               kT0 + absl::Hours(1), "eval-job"})
                  .ok());
  ASSERT_TRUE(storage_.usage->PutSignal({"csat", 4.5, "", kT0, "survey"}).ok());
  Open();
  std::optional<Signal> signal = storage_.usage->GetSignal("golden-accuracy");
  ASSERT_TRUE(signal.has_value());
  EXPECT_EQ(signal->value, 0.93);
  EXPECT_EQ(signal->time, kT0 + absl::Hours(1));
  EXPECT_EQ(signal->scope, "model:gpt-4.1-mini");
  EXPECT_EQ(signal->reported_by, "eval-job");
  const std::vector<Signal> all = storage_.usage->ListSignals();
  ASSERT_EQ(all.size(), 2u);
  EXPECT_EQ(all[0].name, "csat");
}

// A data directory written before the `usage` column family existed opens
// as it is: the family is added empty and usage starts from nothing.
// Before counter sets, every counter of a row was a key of its own (row +
// kind byte) holding one int64. Such rows are still read, and added to the
// counter sets of the same row.
TEST_F(UsageStoreTest, RowsStoredOneCounterPerKeyAreStillRead) {
  SetBudget("org");
  Call("alice", 10, kT0 + absl::Minutes(5));
  storage_ = RocksStorage();
  {
    std::vector<std::string> names;
    ASSERT_TRUE(
        rocksdb::DB::ListColumnFamilies(rocksdb::DBOptions(), dir_.path(),
                                        &names)
            .ok());
    std::vector<rocksdb::ColumnFamilyDescriptor> descriptors;
    size_t usage = names.size();
    for (size_t i = 0; i < names.size(); ++i) {
      // The int64 keys are written as bursar.Int64Add did; reading the
      // counter-set rows back needs the operator that knows them.
      rocksdb::ColumnFamilyOptions options;
      options.merge_operator = NewCounterMergeOperator('P');
      descriptors.emplace_back(names[i], options);
      if (names[i] == "usage") usage = i;
    }
    ASSERT_LT(usage, names.size());
    std::vector<rocksdb::ColumnFamilyHandle*> handles;
    rocksdb::DB* raw = nullptr;
    ASSERT_TRUE(rocksdb::DB::Open(rocksdb::DBOptions(), dir_.path(),
                                  descriptors, &handles, &raw)
                    .ok());
    std::unique_ptr<rocksdb::DB> db(raw);
    std::vector<std::string> rows;
    std::unique_ptr<rocksdb::Iterator> it(
        db->NewIterator(rocksdb::ReadOptions(), handles[usage]));
    for (it->SeekToFirst(); it->Valid(); it->Next()) {
      const std::string key = it->key().ToString();
      if (key[0] == 'a' && key.back() == 'P') {
        rows.push_back(key.substr(0, key.size() - 1));
      }
    }
    ASSERT_FALSE(rows.empty());
    for (const std::string& row : rows) {
      ASSERT_TRUE(db->Merge(rocksdb::WriteOptions(), handles[usage], row + 'c',
                            EncodeInt64(7))
                      .ok());
      ASSERT_TRUE(db->Merge(rocksdb::WriteOptions(), handles[usage], row + 'c',
                            EncodeInt64(4))
                      .ok());
      ASSERT_TRUE(db->Put(rocksdb::WriteOptions(), handles[usage], row + 'r',
                          EncodeInt64(1))
                      .ok());
    }
    for (rocksdb::ColumnFamilyHandle* h : handles) {
      ASSERT_TRUE(db->DestroyColumnFamilyHandle(h).ok());
    }
  }
  Open();
  const UsageCounts total = Total("", kT0, kT0 + absl::Hours(1));
  EXPECT_EQ(total.cost_nanos, 10 + 7 + 4);
  EXPECT_EQ(total.requests, 1 + 1);
  EXPECT_EQ(total.input_tokens, 100);
  // New settlements merge into the same rows.
  Call("alice", 5, kT0 + absl::Minutes(6));
  EXPECT_EQ(Total("", kT0, kT0 + absl::Hours(1)).cost_nanos, 10 + 7 + 4 + 5);
}

TEST(UsageStoreUpgradeTest, DatabaseWithoutUsageFamilyOpens) {
  TempDir dir;
  {
    rocksdb::DBOptions options;
    options.create_if_missing = true;
    options.create_missing_column_families = true;
    std::vector<rocksdb::ColumnFamilyDescriptor> descriptors;
    for (const char* name : {"default", "meta", "budgets", "counters", "holds",
                             "audit", "policies"}) {
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
  absl::StatusOr<RocksStorage> storage = OpenRocksStorage(options);
  ASSERT_TRUE(storage.ok()) << storage.status();
  absl::StatusOr<std::vector<UsageRow>> rows =
      storage->usage->Rows(kT0, kT0 + absl::Hours(1));
  ASSERT_TRUE(rows.ok());
  EXPECT_TRUE(rows->empty());
  EXPECT_TRUE(storage->usage->ListSignals().empty());
}

TEST(LatencyBucketTest, LogBuckets) {
  EXPECT_EQ(LatencyBucket(absl::ZeroDuration()), 0);
  EXPECT_EQ(LatencyBucket(absl::Microseconds(999)), 0);
  EXPECT_EQ(LatencyBucket(absl::Milliseconds(1)), 1);
  EXPECT_EQ(LatencyBucket(absl::Milliseconds(2)), 2);
  EXPECT_EQ(LatencyBucket(absl::Milliseconds(3)), 2);
  EXPECT_EQ(LatencyBucket(absl::Milliseconds(300)), 9);  // [256, 512)
  EXPECT_EQ(LatencyBucketBound(9), absl::Milliseconds(512));
  EXPECT_EQ(LatencyBucket(absl::Hours(10)), kLatencyBuckets - 1);
}

TEST(UsageCountsTest, AddScaledRoundsTowardZero) {
  UsageCounts a;
  a.cost_nanos = 1000;
  a.requests = 3;
  UsageCounts b;
  b.AddScaled(a, 1, 2);
  EXPECT_EQ(b.cost_nanos, 500);
  EXPECT_EQ(b.requests, 1);
}

}  // namespace
}  // namespace bursar::storage
