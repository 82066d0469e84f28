// The usage store on real RocksDB (OpenRocksStorage): rollups written in the
// ledger's settlement batch, their totals to the nano, hour boundaries,
// expiries, signals, and all of it after a reopen.

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/civil_time.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "rocksdb/db.h"
#include "rocksdb/options.h"
#include "storage/counter_set.h"
#include "storage/fault_injection_fs.h"
#include "storage/int64_add_operator.h"
#include "storage/ledger.h"
#include "storage/rocks_storage.h"
#include "storage/usage_delta_log.h"
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
    options.env = env_;
    absl::StatusOr<RocksStorage> storage =
        OpenRocksStorage(options, usage_options_);
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
        storage_.ledger
            ->Settle(hold->reservation_id, cost, now, &update, {}, nullptr)
            .ok());
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

  // The sum of every KPI row of (budget, instance) over [start, end).
  UsageCounts KpiTotal(absl::string_view budget, absl::string_view instance,
                       absl::Time start, absl::Time end) {
    absl::StatusOr<std::vector<std::pair<absl::Time, UsageCounts>>> kpi =
        storage_.usage->KpiRows(budget, instance, start, end);
    EXPECT_TRUE(kpi.ok()) << kpi.status();
    UsageCounts total;
    if (!kpi.ok()) return total;
    for (const auto& [hour, counts] : *kpi) total.Add(counts);
    return total;
  }

  // Closes the storage and counts the usage records (`usage_log`) and the
  // attribution row keys (`usage`, prefix 'a') on disk.
  void CountOnDisk(int* records, int* attribution_keys) {
    storage_ = RocksStorage();
    *records = -1;
    *attribution_keys = -1;
    std::vector<std::string> names;
    ASSERT_TRUE(rocksdb::DB::ListColumnFamilies(rocksdb::DBOptions(),
                                                dir_.path(), &names)
                    .ok());
    std::vector<rocksdb::ColumnFamilyDescriptor> descriptors;
    for (const std::string& name : names) {
      rocksdb::ColumnFamilyOptions options;
      options.merge_operator = NewCounterMergeOperator('P');
      descriptors.emplace_back(name, options);
    }
    std::vector<rocksdb::ColumnFamilyHandle*> handles;
    rocksdb::DB* raw = nullptr;
    ASSERT_TRUE(rocksdb::DB::OpenForReadOnly(rocksdb::DBOptions(), dir_.path(),
                                             descriptors, &handles, &raw)
                    .ok());
    std::unique_ptr<rocksdb::DB> db(raw);
    for (size_t i = 0; i < names.size(); ++i) {
      if (names[i] != "usage_log" && names[i] != "usage") continue;
      int count = 0;
      std::unique_ptr<rocksdb::Iterator> it(
          db->NewIterator(rocksdb::ReadOptions(), handles[i]));
      for (it->SeekToFirst(); it->Valid(); it->Next()) {
        if (names[i] == "usage_log" || it->key()[0] == 'a') ++count;
      }
      EXPECT_TRUE(it->status().ok());
      (names[i] == "usage_log" ? *records : *attribution_keys) = count;
    }
    for (rocksdb::ColumnFamilyHandle* h : handles) {
      ASSERT_TRUE(db->DestroyColumnFamilyHandle(h).ok());
    }
  }

  TempDir dir_;
  // Set before Open (SetUp opens with the defaults: a folder every 100 ms).
  UsageStoreOptions usage_options_;
  rocksdb::Env* env_ = nullptr;
  RocksStorage storage_;
};

// The usage log with no folder thread: records are folded only when a test
// (FoldPending), a read with many waiting, or an open does it.
class UsageLogTest : public UsageStoreTest {
 protected:
  void SetUp() override {
    usage_options_.fold_interval = absl::InfiniteDuration();
    Open();
  }
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
  absl::StatusOr<SettleResult> again = storage_.ledger->Settle(
      hold.reservation_id, 500, kT0, &update, {}, nullptr);
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
  ASSERT_TRUE(storage_.usage->FoldPending().ok());  // the rows this test edits
  storage_ = RocksStorage();
  {
    std::vector<std::string> names;
    ASSERT_TRUE(rocksdb::DB::ListColumnFamilies(rocksdb::DBOptions(),
                                                dir_.path(), &names)
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

// A Report writes one record to the usage log, not its rows; a crash (or a
// stop) before the fold leaves the records on disk. The next open folds
// them into the rows and deletes them in one batch: every Report is counted
// once, however often the database is reopened.
TEST_F(UsageLogTest, UnfoldedRecordsAreFoldedExactlyOnceAtOpen) {
  SetBudget("org");
  SetBudget("per-user", "user");
  int64_t sum = 0;
  // More records than one fold's batch takes: the open folds them in
  // several batches.
  for (int i = 0; i < 150; ++i) {
    const int64_t cost = 1000 + i;
    Call(i % 2 == 0 ? "alice" : "bob", cost, kT0 + absl::Minutes(i));
    sum += cost;
  }
  int records = 0;
  int attribution_keys = 0;
  CountOnDisk(&records, &attribution_keys);
  EXPECT_EQ(records, 150);  // one record per Report, nothing folded yet
  EXPECT_EQ(attribution_keys, 0);
  for (int pass = 0; pass < 3; ++pass) {
    Open();
    const absl::Time end = kT0 + absl::Hours(3);
    EXPECT_EQ(Total("", kT0, end).cost_nanos, sum);
    EXPECT_EQ(Total("", kT0, end).requests, 150);
    EXPECT_EQ(Total("org", kT0, end).cost_nanos, sum);
    EXPECT_EQ(Total("per-user", kT0, end).requests, 150);
    EXPECT_EQ(KpiTotal("per-user", "alice", kT0, end).requests, 75);
    EXPECT_EQ(KpiTotal("org", "", kT0, end).latency_reports, 150);
    CountOnDisk(&records, &attribution_keys);
    EXPECT_EQ(records, 0);  // folded at the first open
    EXPECT_GT(attribution_keys, 0);
  }
}

// Reads add the records not folded yet: a read right after a Report sees
// it, and the rows read the same before and after the fold.
TEST_F(UsageLogTest, ReadRightAfterReportSeesItBeforeAndAfterTheFold) {
  SetBudget("org");
  SetBudget("per-user", "user");
  Call("alice", 10, kT0 + absl::Minutes(5), "gpt-4.1");
  ASSERT_TRUE(storage_.usage->FoldPending().ok());
  // Pending records: one adds to a folded row, two make new rows (a new
  // model; a new hour).
  Call("alice", 20, kT0 + absl::Minutes(6), "gpt-4.1");
  Call("bob", 40, kT0 + absl::Minutes(7), "gpt-4.1-mini");
  Call("alice", 80, kT0 + absl::Minutes(65), "gpt-4.1");
  const absl::Time end = kT0 + absl::Hours(2);
  EXPECT_EQ(Total("", kT0, end).cost_nanos, 150);
  EXPECT_EQ(Total("org", kT0, kT0 + absl::Hours(1)).cost_nanos, 70);
  EXPECT_EQ(KpiTotal("per-user", "alice", kT0, end).cost_nanos, 110);
  EXPECT_EQ(KpiTotal("per-user", "bob", kT0, end).cost_nanos, 40);

  absl::StatusOr<std::vector<UsageRow>> pending =
      storage_.usage->Rows(kT0, end);
  ASSERT_TRUE(pending.ok()) << pending.status();
  absl::StatusOr<std::vector<std::pair<absl::Time, UsageCounts>>> kpi_pending =
      storage_.usage->KpiRows("per-user", "alice", kT0, end);
  ASSERT_TRUE(kpi_pending.ok());
  ASSERT_TRUE(storage_.usage->FoldPending().ok());
  absl::StatusOr<std::vector<UsageRow>> folded = storage_.usage->Rows(kT0, end);
  ASSERT_TRUE(folded.ok()) << folded.status();
  ASSERT_EQ(pending->size(), folded->size());
  ASSERT_EQ(folded->size(), 9u);  // (call, org, per-user) x 3 distinct keys
  for (size_t i = 0; i < folded->size(); ++i) {
    const UsageRowKey& a = (*pending)[i].key;
    const UsageRowKey& b = (*folded)[i].key;
    EXPECT_EQ(a.hour, b.hour) << i;
    EXPECT_EQ(a.budget, b.budget) << i;
    EXPECT_EQ(a.instance, b.instance) << i;
    EXPECT_EQ(a.model, b.model) << i;
    EXPECT_EQ(a.dimensions, b.dimensions) << i;
    EXPECT_TRUE((*pending)[i].counts == (*folded)[i].counts) << i;
  }
  absl::StatusOr<std::vector<std::pair<absl::Time, UsageCounts>>> kpi_folded =
      storage_.usage->KpiRows("per-user", "alice", kT0, end);
  ASSERT_TRUE(kpi_folded.ok());
  ASSERT_EQ(kpi_pending->size(), 2u);
  ASSERT_EQ(kpi_folded->size(), 2u);
  for (size_t i = 0; i < 2; ++i) {
    EXPECT_EQ((*kpi_pending)[i].first, (*kpi_folded)[i].first);
    EXPECT_TRUE((*kpi_pending)[i].second == (*kpi_folded)[i].second);
  }
  // Attribution rows carry no KPI-only counters, folded or not.
  for (const UsageRow& row : *pending) EXPECT_EQ(row.counts.latency_reports, 0);
}

// Expired reservations (Record) go through the log too.
TEST_F(UsageLogTest, ManyKpiQueriesReadTogetherGetEachTheirOwnRows) {
  SetBudget("per-user", "user");
  // Per (user, hour): the cost settled. Half the calls are folded into the
  // rows, the later half wait in the log, some in hours that have rows.
  std::map<std::pair<std::string, absl::Time>, int64_t> expected;
  auto call = [&](const std::string& user, int64_t cost, absl::Duration at) {
    Call(user, cost, kT0 + at);
    expected[{user, kT0 + absl::Hours(absl::ToInt64Hours(at))}] += cost;
  };
  call("alice", 10, absl::Minutes(5));
  call("bob", 20, absl::Minutes(6));
  call("alice", 30, absl::Minutes(70));
  ASSERT_TRUE(storage_.usage->FoldPending().ok());
  call("alice", 40, absl::Minutes(75));   // an hour with a folded row
  call("alice", 50, absl::Minutes(130));  // an hour with only pending ones
  call("bob", 60, absl::Minutes(8));

  const absl::Time end = kT0 + absl::Hours(3);
  const KpiRowsQuery queries[] = {
      {"per-user", "alice", kT0, end},
      {"per-user", "bob", kT0, end},
      {"per-user", "alice", kT0 + absl::Hours(1), kT0 + absl::Hours(2)},
      {"per-user", "carol", kT0, end},
      {"per-user", "alice", end, kT0},  // empty range
  };
  absl::StatusOr<std::vector<KpiRowList>> rows =
      storage_.usage->ReadKpiRows(queries);
  ASSERT_TRUE(rows.ok()) << rows.status();
  ASSERT_EQ(rows->size(), 5u);
  auto costs = [](const KpiRowList& list) {
    std::vector<std::pair<absl::Time, int64_t>> out;
    for (const auto& [hour, counts] : list) {
      out.emplace_back(hour, counts.cost_nanos);
    }
    return out;
  };
  auto expected_costs = [&](const std::string& user, absl::Time from,
                            absl::Time to) {
    std::vector<std::pair<absl::Time, int64_t>> out;
    for (const auto& [key, cost] : expected) {
      if (key.first == user && key.second >= from && key.second < to) {
        out.emplace_back(key.second, cost);
      }
    }
    return out;
  };
  EXPECT_EQ(costs((*rows)[0]), expected_costs("alice", kT0, end));
  EXPECT_EQ(costs((*rows)[0]).size(), 3u);
  EXPECT_EQ(costs((*rows)[1]), expected_costs("bob", kT0, end));
  EXPECT_EQ(costs((*rows)[2]), expected_costs("alice", kT0 + absl::Hours(1),
                                              kT0 + absl::Hours(2)));
  EXPECT_TRUE((*rows)[3].empty());
  EXPECT_TRUE((*rows)[4].empty());
}

TEST_F(UsageLogTest, RecordedExpiriesAreReadBeforeAndAfterTheFold) {
  UsageUpdate update;
  update.time = kT0;
  update.model = "gpt-4.1";
  update.budgets = {{"org", ""}};
  update.counts.expired = 1;
  update.counts.expired_estimate_nanos = 777;
  ASSERT_TRUE(storage_.usage->Record(update).ok());
  EXPECT_EQ(Total("org", kT0, kT0 + absl::Hours(1)).expired, 1);
  ASSERT_TRUE(storage_.usage->FoldPending().ok());
  EXPECT_EQ(Total("org", kT0, kT0 + absl::Hours(1)).expired_estimate_nanos,
            777);
  EXPECT_EQ(KpiTotal("org", "", kT0, kT0 + absl::Hours(1)).expired, 1);
}

// Retention folds first: a record of a deleted hour does not bring its row
// back when it is folded later.
TEST_F(UsageLogTest, DeleteBeforeFoldsFirst) {
  SetBudget("org");
  Call("alice", 10, kT0);
  Call("alice", 20, kT0 + absl::Hours(3));
  ASSERT_TRUE(storage_.usage->DeleteBefore(kT0 + absl::Hours(1)).ok());
  ASSERT_TRUE(storage_.usage->FoldPending().ok());
  Open();
  EXPECT_EQ(Total("", kT0 - absl::Hours(1), kT0 + absl::Hours(5)).cost_nanos,
            20);
  EXPECT_EQ(KpiTotal("org", "", kT0, kT0 + absl::Hours(5)).cost_nanos, 20);
}

// A fold whose write fails (a full disk) leaves its records in the log and
// the rows as they were: reads still count every Report once, and the next
// fold, once the disk is back, writes them once. A Report whose own write
// failed leaves a gap in the log's numbering that the fold steps over.
TEST_F(UsageLogTest, FailedFoldLosesNothingAndCountsNothingTwice) {
  FaultInjectionFs fs;
  env_ = fs.env();
  Open();
  SetBudget("org");
  int64_t sum = 0;
  for (int i = 0; i < 10; ++i) {
    Call("alice", 100 + i, kT0 + absl::Minutes(i));
    sum += 100 + i;
  }
  ASSERT_TRUE(storage_.usage->FoldPending().ok());
  for (int i = 0; i < 10; ++i) {
    Call("bob", 1000 + i, kT0 + absl::Minutes(20 + i));
    sum += 1000 + i;
  }
  fs.FailWrites(true);
  const absl::Status failed = storage_.usage->FoldPending();
  EXPECT_EQ(failed.code(), absl::StatusCode::kUnavailable) << failed;
  EXPECT_GT(fs.failures(), 0);
  // A Report while the disk is full fails and records nothing.
  {
    LabelSet labels;
    labels.Add("user", "carol");
    ReserveRequest request;
    request.labels = &labels;
    request.estimate_nanos = 1;
    absl::StatusOr<ReserveResult> reserved =
        storage_.ledger->Reserve(request, kT0);
    EXPECT_FALSE(reserved.ok());
  }
  const absl::Time end = kT0 + absl::Hours(1);
  EXPECT_EQ(Total("", kT0, end).cost_nanos, sum);
  EXPECT_EQ(Total("org", kT0, end).requests, 20);
  EXPECT_EQ(KpiTotal("org", "", kT0, end).cost_nanos, sum);
  fs.FailWrites(false);
  EXPECT_EQ(Total("", kT0, end).cost_nanos, sum);
  ASSERT_TRUE(storage_.usage->FoldPending().ok());
  EXPECT_EQ(Total("", kT0, end).cost_nanos, sum);
  EXPECT_EQ(KpiTotal("org", "", kT0, end).requests, 20);
  Call("carol", 5, kT0 + absl::Minutes(40));
  sum += 5;
  ASSERT_TRUE(storage_.usage->FoldPending().ok());
  int records = 0;
  int attribution_keys = 0;
  CountOnDisk(&records, &attribution_keys);
  EXPECT_EQ(records, 0);
  Open();
  EXPECT_EQ(Total("", kT0, end).cost_nanos, sum);
  EXPECT_EQ(Total("org", kT0, end).requests, 21);
  storage_ = RocksStorage();  // before fs goes
}

// A settlement whose own write fails leaves a gap in the log's numbering;
// the fold steps over it and later records are folded.
TEST_F(UsageLogTest, FailedSettlementLeavesAGapTheFoldStepsOver) {
  FaultInjectionFs fs;
  env_ = fs.env();
  Open();
  SetBudget("org");
  Call("alice", 1, kT0);
  LabelSet labels;
  labels.Add("user", "bob");
  ReserveRequest request;
  request.labels = &labels;
  request.estimate_nanos = 10;
  absl::StatusOr<ReserveResult> reserved =
      storage_.ledger->Reserve(request, kT0);
  ASSERT_TRUE(reserved.ok());
  absl::StatusOr<HoldView> hold =
      storage_.ledger->GetHold(reserved->reservation_id);
  ASSERT_TRUE(hold.ok());
  UsageUpdate update = UpdateFor(*hold, "gpt-4.1", "bob", kT0);
  update.counts.cost_nanos = 10;
  update.counts.requests = 1;
  fs.FailWrites(true);
  EXPECT_FALSE(storage_.ledger
                   ->Settle(hold->reservation_id, 10, kT0, &update, {}, nullptr)
                   .ok());
  fs.FailWrites(false);
  Call("carol", 100, kT0);
  ASSERT_TRUE(storage_.usage->FoldPending().ok());
  EXPECT_EQ(Total("", kT0, kT0 + absl::Hours(1)).cost_nanos, 101);
  // The Report retried once the disk is back counts once.
  ASSERT_TRUE(storage_.ledger
                  ->Settle(hold->reservation_id, 10, kT0, &update, {}, nullptr)
                  .ok());
  ASSERT_TRUE(storage_.usage->FoldPending().ok());
  Open();
  EXPECT_EQ(Total("", kT0, kT0 + absl::Hours(1)).cost_nanos, 111);
  EXPECT_EQ(Total("org", kT0, kT0 + absl::Hours(1)).requests, 3);
  storage_ = RocksStorage();  // before fs goes
}

// Settlements on several threads while folds and reads run: every Report
// is counted once.
TEST_F(UsageLogTest, ConcurrentReportsFoldsAndReadsCountEveryReportOnce) {
  SetBudget("org");
  constexpr int kThreads = 4;
  constexpr int kCalls = 150;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([this, t] {
      for (int i = 0; i < kCalls; ++i) {
        Call(absl::StrCat("u", t), 1, kT0 + absl::Minutes(i % 60));
      }
    });
  }
  int64_t last_seen = 0;
  for (int i = 0; i < 200; ++i) {
    ASSERT_TRUE(storage_.usage->FoldPending().ok());
    // Reports only add: what a read sees never goes down.
    const int64_t seen = Total("org", kT0, kT0 + absl::Hours(1)).requests;
    EXPECT_GE(seen, last_seen);
    last_seen = seen;
  }
  for (std::thread& thread : threads) thread.join();
  EXPECT_EQ(Total("org", kT0, kT0 + absl::Hours(1)).requests,
            kThreads * kCalls);
  ASSERT_TRUE(storage_.usage->FoldPending().ok());
  EXPECT_EQ(Total("", kT0, kT0 + absl::Hours(1)).cost_nanos, kThreads * kCalls);
  Open();
  EXPECT_EQ(KpiTotal("org", "", kT0, kT0 + absl::Hours(1)).requests,
            kThreads * kCalls);
}

// A ledger opened alone (no usage store to fold) writes the rows
// directly, as before the log existed.
TEST(UsageLogAloneTest, LedgerWithoutUsageStoreWritesRowsDirectly) {
  TempDir dir;
  RocksLedgerOptions options;
  options.path = dir.path();
  options.sync = SyncMode::kNone;
  {
    absl::StatusOr<std::unique_ptr<Ledger>> ledger = OpenRocksLedger(options);
    ASSERT_TRUE(ledger.ok()) << ledger.status();
    BudgetSpec spec;
    spec.name = "org";
    spec.amount_nanos = 1'000'000;
    ASSERT_TRUE((*ledger)->SetBudget(spec, Actor{"test"}, kT0).ok());
    LabelSet labels;
    ReserveRequest request;
    request.labels = &labels;
    request.estimate_nanos = 10;
    absl::StatusOr<ReserveResult> reserved = (*ledger)->Reserve(request, kT0);
    ASSERT_TRUE(reserved.ok());
    UsageUpdate update;
    update.time = kT0;
    update.model = "gpt-4.1";
    update.budgets = {{"org", ""}};
    update.counts.cost_nanos = 7;
    update.counts.requests = 1;
    ASSERT_TRUE(
        (*ledger)
            ->Settle(reserved->reservation_id, 7, kT0, &update, {}, nullptr)
            .ok());
  }
  UsageStoreOptions usage_options;
  usage_options.fold_interval = absl::InfiniteDuration();
  absl::StatusOr<RocksStorage> storage =
      OpenRocksStorage(options, usage_options);
  ASSERT_TRUE(storage.ok()) << storage.status();
  absl::StatusOr<std::vector<UsageRow>> rows =
      storage->usage->Rows(kT0, kT0 + absl::Hours(1));
  ASSERT_TRUE(rows.ok());
  ASSERT_EQ(rows->size(), 2u);
  EXPECT_EQ((*rows)[0].counts.cost_nanos, 7);
  EXPECT_EQ((*rows)[1].counts.cost_nanos, 7);
}

// A database written before the `usage_log` family existed (rows only)
// opens as it is: the family is added empty and the rows read as before.
TEST_F(UsageLogTest, DatabaseWithoutUsageLogFamilyOpens) {
  SetBudget("org");
  Call("alice", 10, kT0);
  ASSERT_TRUE(storage_.usage->FoldPending().ok());
  storage_ = RocksStorage();
  {
    std::vector<std::string> names;
    ASSERT_TRUE(rocksdb::DB::ListColumnFamilies(rocksdb::DBOptions(),
                                                dir_.path(), &names)
                    .ok());
    std::vector<rocksdb::ColumnFamilyDescriptor> descriptors;
    for (const std::string& name : names) {
      rocksdb::ColumnFamilyOptions options;
      options.merge_operator = NewCounterMergeOperator('P');
      descriptors.emplace_back(name, options);
    }
    std::vector<rocksdb::ColumnFamilyHandle*> handles;
    rocksdb::DB* raw = nullptr;
    ASSERT_TRUE(rocksdb::DB::Open(rocksdb::DBOptions(), dir_.path(),
                                  descriptors, &handles, &raw)
                    .ok());
    std::unique_ptr<rocksdb::DB> db(raw);
    bool dropped = false;
    for (size_t i = 0; i < names.size(); ++i) {
      if (names[i] == "usage_log") {
        ASSERT_TRUE(db->DropColumnFamily(handles[i]).ok());
        dropped = true;
      }
    }
    EXPECT_TRUE(dropped);
    for (rocksdb::ColumnFamilyHandle* h : handles) {
      ASSERT_TRUE(db->DestroyColumnFamilyHandle(h).ok());
    }
    names.clear();
    ASSERT_TRUE(rocksdb::DB::ListColumnFamilies(rocksdb::DBOptions(),
                                                dir_.path(), &names)
                    .ok());
    EXPECT_THAT(names, ::testing::Not(::testing::Contains("usage_log")));
  }
  Open();
  EXPECT_EQ(Total("org", kT0, kT0 + absl::Hours(1)).cost_nanos, 10);
  Call("bob", 5, kT0);
  EXPECT_EQ(Total("", kT0, kT0 + absl::Hours(1)).cost_nanos, 15);
}

// The fold may take only numbers below the smallest one in flight: a batch
// that got a number earlier may be written later.
TEST(UsageDeltaLogTest, SettledBelowWaitsForTheOldestNumberInFlight) {
  UsageDeltaLog log;
  EXPECT_FALSE(log.Begin().held());  // no usage store attached
  log.Attach(10);
  UsageDeltaLog::Guard first = log.Begin();
  UsageDeltaLog::Guard second = log.Begin();
  ASSERT_TRUE(first.held());
  EXPECT_EQ(first.sequence(), 10u);
  EXPECT_EQ(second.sequence(), 11u);
  EXPECT_EQ(log.SettledBelow(), 10u);
  second = UsageDeltaLog::Guard();  // the later one was written first
  EXPECT_EQ(log.SettledBelow(), 10u);
  first = UsageDeltaLog::Guard();
  EXPECT_EQ(log.SettledBelow(), 12u);
  log.Detach();
  EXPECT_FALSE(log.Begin().held());
  log.Attach(5);  // numbering never goes back
  EXPECT_EQ(log.Begin().sequence(), 12u);
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
