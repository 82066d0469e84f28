#include "storage/rocks_storage.h"

#include <utility>

#include "storage/rocks_database.h"
#include "storage/usage_rocks_store.h"

namespace bursar::storage {

absl::StatusOr<RocksStorage> OpenRocksStorage(
    const RocksLedgerOptions& options, const UsageStoreOptions& usage_options) {
  absl::StatusOr<std::shared_ptr<RocksDatabase>> database =
      RocksDatabase::Open(DatabaseOptions(options));
  if (!database.ok()) return database.status();
  RocksStorage storage;
  storage.database_stats = [weak = std::weak_ptr<RocksDatabase>(*database)] {
    const std::shared_ptr<RocksDatabase> open = weak.lock();
    return open != nullptr ? open->Stats() : DatabaseStats();
  };
  storage.create_checkpoint =
      [weak = std::weak_ptr<RocksDatabase>(*database)](const std::string& dir) {
        const std::shared_ptr<RocksDatabase> open = weak.lock();
        if (open == nullptr) {
          return absl::UnavailableError("the database is closed");
        }
        return open->CreateCheckpoint(dir);
      };
  absl::StatusOr<std::unique_ptr<Ledger>> ledger =
      NewRocksLedger(*database, options);
  if (!ledger.ok()) return ledger.status();
  storage.ledger = *std::move(ledger);
  absl::StatusOr<std::unique_ptr<AlertStore>> alerts =
      NewRocksAlertStore(*database);
  if (!alerts.ok()) return alerts.status();
  storage.alerts = *std::move(alerts);
  absl::StatusOr<std::unique_ptr<UsageStore>> usage =
      NewRocksUsageStore(*database, usage_options);
  if (!usage.ok()) return usage.status();
  storage.usage = *std::move(usage);
  absl::StatusOr<std::unique_ptr<PolicyVersionStore>> policy_versions =
      NewRocksPolicyVersionStore(*std::move(database));
  if (!policy_versions.ok()) return policy_versions.status();
  storage.policy_versions = *std::move(policy_versions);
  return storage;
}

}  // namespace bursar::storage
