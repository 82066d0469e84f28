// PolicyVersionStore on the shared RocksDB database: one record per version
// in the `policies` column family, the active version's id under the key
// "active" and the shadow version's under "shadow" of the same family
// (storage/README.md).

#include <algorithm>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "google/protobuf/util/json_util.h"
#include "storage/rocks_database.h"

namespace bursar::storage {
namespace {

constexpr char kVersionPrefix[] = "v/";
constexpr char kActiveKey[] = "active";
constexpr char kShadowKey[] = "shadow";

std::string VersionKey(absl::string_view id) {
  return absl::StrCat(kVersionPrefix, id);
}

bool IsIdChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
         (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-';
}

absl::Status ValidateId(absl::string_view id) {
  if (id.empty() || id.size() > kMaxPolicyVersionIdBytes ||
      !std::all_of(id.begin(), id.end(), IsIdChar)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "policy version id must be 1..", kMaxPolicyVersionIdBytes,
        " bytes of [A-Za-z0-9._-], got \"", absl::CHexEscape(id), "\""));
  }
  return absl::OkStatus();
}

PolicyVersionRecord ToRecord(const PolicyVersion& version) {
  PolicyVersionRecord record;
  record.set_id(version.id);
  for (const PolicyFile& file : version.files) {
    PolicyFileRecord* out = record.add_files();
    out->set_path(file.path);
    out->set_content(file.content);
  }
  record.set_author(version.author);
  record.set_message(version.message);
  record.set_created_at_micros(absl::ToUnixMicros(version.created_at));
  return record;
}

PolicyVersion FromRecord(PolicyVersionRecord record, bool with_files) {
  PolicyVersion version;
  version.id = std::move(*record.mutable_id());
  if (with_files) {
    for (PolicyFileRecord& file : *record.mutable_files()) {
      version.files.push_back({std::move(*file.mutable_path()),
                               std::move(*file.mutable_content())});
    }
  }
  version.author = std::move(*record.mutable_author());
  version.message = std::move(*record.mutable_message());
  version.created_at = absl::FromUnixMicros(record.created_at_micros());
  return version;
}

// The audit JSON of the active version and the shadow version's id
// (PolicyAuditState); "" when no version is active, or if it cannot be
// printed (text that is not UTF-8).
std::string AuditJson(const std::optional<PolicyVersion>& version,
                      absl::string_view shadow) {
  if (!version.has_value()) return "";
  PolicyAuditState state;
  state.set_version(version->id);
  state.set_shadow_version(std::string(shadow));
  state.set_author(version->author);
  state.set_message(version->message);
  state.set_created_at(absl::FormatTime(
      "%Y-%m-%dT%H:%M:%SZ", version->created_at, absl::UTCTimeZone()));
  google::protobuf::util::JsonPrintOptions options;
  options.always_print_primitive_fields = true;
  options.preserve_proto_field_names = true;
  std::string json;
  if (!google::protobuf::util::MessageToJsonString(state, &json, options)
           .ok()) {
    return "";
  }
  return json;
}

class RocksPolicyVersionStore final : public PolicyVersionStore {
 public:
  explicit RocksPolicyVersionStore(std::shared_ptr<RocksDatabase> database)
      : database_(std::move(database)),
        db_(database_->db()),
        cf_(database_->cf(RocksDatabase::kPoliciesCf)) {}

  // Reads the active and shadow versions' ids; DataLoss if one names no
  // stored version.
  absl::Status Load();

  absl::StatusOr<PutPolicyResult> Put(PolicyVersion version, bool activate,
                                      const Actor& actor,
                                      absl::Time now) override;
  absl::StatusOr<PolicyVersion> Get(absl::string_view id) const override;
  absl::StatusOr<std::vector<PolicyVersion>> List() const override;
  std::string ActiveVersion() const override {
    absl::MutexLock lock(&mu_);
    return active_;
  }
  absl::StatusOr<std::string> Activate(absl::string_view id, const Actor& actor,
                                       absl::Time now) override;
  std::string ShadowVersion() const override {
    absl::MutexLock lock(&mu_);
    return shadow_;
  }
  absl::StatusOr<PutPolicyResult> PutShadow(PolicyVersion version,
                                            const Actor& actor,
                                            absl::Time now) override;
  absl::StatusOr<std::string> ClearShadow(const Actor& actor,
                                          absl::Time now) override;

 private:
  // The state a policy audit record shows: the active version and the
  // shadow version's id.
  struct AuditState {
    std::optional<PolicyVersion> active;
    std::string shadow;
  };

  // Validates `version` (InvalidArgument) and sorts its files.
  static absl::Status Normalize(PolicyVersion& version);
  // The active version (without files) and the shadow id, as they are now.
  absl::StatusOr<AuditState> CurrentState() const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The stored version `id`, nullopt if there is none.
  absl::StatusOr<std::optional<PolicyVersion>> Read(absl::string_view id,
                                                    bool with_files) const;
  // Fills result's previous ids and version; adds `version` to `batch`
  // unless it is stored already (then result.created is false).
  absl::Status StageVersion(PolicyVersion version, absl::Time now,
                            rocksdb::WriteBatch& batch,
                            PutPolicyResult& result) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::StatusOr<PutPolicyResult> PutLocked(PolicyVersion version,
                                            bool activate, const Actor& actor,
                                            absl::Time now, uint64_t* ticket)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::StatusOr<std::string> ActivateLocked(absl::string_view id,
                                             const Actor& actor, absl::Time now,
                                             uint64_t* ticket)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::StatusOr<PutPolicyResult> PutShadowLocked(PolicyVersion version,
                                                  const Actor& actor,
                                                  absl::Time now,
                                                  uint64_t* ticket)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::StatusOr<std::string> ClearShadowLocked(const Actor& actor,
                                                absl::Time now,
                                                uint64_t* ticket)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void AddAudit(rocksdb::WriteBatch& batch, absl::Time now,
                absl::string_view action, absl::string_view id,
                const Actor& actor, const AuditState& before,
                const AuditState& after);

  const std::shared_ptr<RocksDatabase> database_;
  rocksdb::DB* const db_;
  rocksdb::ColumnFamilyHandle* const cf_;
  // Serialises changes, so that each read-check-write is atomic and the
  // order of writes is the order of changes to active_.
  mutable absl::Mutex mu_;
  std::string active_ ABSL_GUARDED_BY(mu_);
  std::string shadow_ ABSL_GUARDED_BY(mu_);
};

absl::Status RocksPolicyVersionStore::Load() {
  std::string ids[2];
  const char* const keys[2] = {kActiveKey, kShadowKey};
  const char* const roles[2] = {"active", "shadow"};
  for (int i = 0; i < 2; ++i) {
    const rocksdb::Status status =
        db_->Get(rocksdb::ReadOptions(), cf_, keys[i], &ids[i]);
    if (status.IsNotFound()) continue;
    if (!status.ok()) {
      return FromRocks(
          status, absl::StrCat("reading the ", roles[i], " policy version"));
    }
    absl::StatusOr<std::optional<PolicyVersion>> stored =
        Read(ids[i], /*with_files=*/false);
    if (!stored.ok()) return stored.status();
    if (!stored->has_value()) {
      return absl::DataLossError(absl::StrCat(
          "the ", roles[i], " policy version \"", absl::CHexEscape(ids[i]),
          "\" is not stored in the ledger"));
    }
  }
  absl::MutexLock lock(&mu_);
  active_ = std::move(ids[0]);
  shadow_ = std::move(ids[1]);
  return absl::OkStatus();
}

absl::StatusOr<std::optional<PolicyVersion>> RocksPolicyVersionStore::Read(
    absl::string_view id, bool with_files) const {
  std::string bytes;
  const rocksdb::Status status =
      db_->Get(rocksdb::ReadOptions(), cf_, VersionKey(id), &bytes);
  if (status.IsNotFound()) return std::nullopt;
  if (!status.ok()) return FromRocks(status, "reading a policy version");
  PolicyVersionRecord record;
  if (!record.ParseFromString(bytes)) {
    return absl::DataLossError(absl::StrCat(
        "policy version record \"", absl::CHexEscape(id), "\" does not parse"));
  }
  return FromRecord(std::move(record), with_files);
}

absl::StatusOr<RocksPolicyVersionStore::AuditState>
RocksPolicyVersionStore::CurrentState() const {
  AuditState state;
  state.shadow = shadow_;
  if (!active_.empty()) {
    absl::StatusOr<std::optional<PolicyVersion>> read =
        Read(active_, /*with_files=*/false);
    if (!read.ok()) return read.status();
    state.active = *std::move(read);
  }
  return state;
}

void RocksPolicyVersionStore::AddAudit(rocksdb::WriteBatch& batch,
                                       absl::Time now, absl::string_view action,
                                       absl::string_view id, const Actor& actor,
                                       const AuditState& before,
                                       const AuditState& after) {
  AuditRecord record;
  record.set_actor(actor.name);
  record.set_role(actor.role);
  record.set_action(std::string(action));
  record.set_target(absl::StrCat("policy:", id));
  record.set_reason(actor.reason);
  record.set_before_json(AuditJson(before.active, before.shadow));
  record.set_after_json(AuditJson(after.active, after.shadow));
  database_->AddAudit(batch, now, std::move(record));
}

absl::StatusOr<PutPolicyResult> RocksPolicyVersionStore::Put(
    PolicyVersion version, bool activate, const Actor& actor, absl::Time now) {
  uint64_t ticket = 0;
  absl::StatusOr<PutPolicyResult> result;
  {
    absl::MutexLock lock(&mu_);
    result = PutLocked(std::move(version), activate, actor, now, &ticket);
  }
  if (!result.ok()) return result;
  // Also when nothing was written: an identical Put may not be durable yet.
  if (absl::Status s = database_->AwaitDurable(ticket); !s.ok()) return s;
  return result;
}

absl::Status RocksPolicyVersionStore::Normalize(PolicyVersion& version) {
  if (absl::Status s = ValidateId(version.id); !s.ok()) return s;
  size_t bytes = version.author.size() + version.message.size();
  for (const PolicyFile& file : version.files) {
    bytes += file.path.size() + file.content.size();
  }
  if (bytes > kMaxPolicyVersionBytes) {
    return absl::InvalidArgumentError(absl::StrCat(
        "policy version \"", version.id, "\" has ", bytes, " bytes; at most ",
        kMaxPolicyVersionBytes, " are stored"));
  }
  std::sort(
      version.files.begin(), version.files.end(),
      [](const PolicyFile& a, const PolicyFile& b) { return a.path < b.path; });
  return absl::OkStatus();
}

absl::Status RocksPolicyVersionStore::StageVersion(
    PolicyVersion version, absl::Time now, rocksdb::WriteBatch& batch,
    PutPolicyResult& result) const {
  absl::StatusOr<std::optional<PolicyVersion>> existing =
      Read(version.id, /*with_files=*/true);
  if (!existing.ok()) return existing.status();
  result.previous_active = active_;
  result.previous_shadow = shadow_;
  if (existing->has_value()) {
    result.version = **std::move(existing);
    result.created = false;
  } else {
    version.created_at = now;
    batch.Put(cf_, VersionKey(version.id),
              ToRecord(version).SerializeAsString());
    result.version = std::move(version);
    result.created = true;
  }
  return absl::OkStatus();
}

absl::StatusOr<PutPolicyResult> RocksPolicyVersionStore::PutLocked(
    PolicyVersion version, bool activate, const Actor& actor, absl::Time now,
    uint64_t* ticket) {
  if (absl::Status s = Normalize(version); !s.ok()) return s;
  absl::StatusOr<AuditState> previous = CurrentState();
  if (!previous.ok()) return previous.status();
  PutPolicyResult result;
  rocksdb::WriteBatch batch;
  if (absl::Status s = StageVersion(std::move(version), now, batch, result);
      !s.ok()) {
    return s;
  }
  const bool activates = activate && active_ != result.version.id;
  if (activates) batch.Put(cf_, kActiveKey, result.version.id);
  // Activating the shadow version promotes it.
  const bool promotes = activates && shadow_ == result.version.id;
  if (promotes) batch.Delete(cf_, kShadowKey);
  if (batch.Count() == 0) {
    *ticket = database_->LatestTicket();
    return result;
  }
  AuditState after = *previous;
  if (activates) {
    after.active = result.version;
    after.active->files.clear();
  }
  if (promotes) after.shadow.clear();
  AddAudit(batch, now, "policy.push", result.version.id, actor, *previous,
           after);
  if (absl::Status s = database_->Write(batch, ticket); !s.ok()) return s;
  if (activates) active_ = result.version.id;
  if (promotes) shadow_.clear();
  return result;
}

absl::StatusOr<PolicyVersion> RocksPolicyVersionStore::Get(
    absl::string_view id) const {
  absl::StatusOr<std::optional<PolicyVersion>> stored =
      Read(id, /*with_files=*/true);
  if (!stored.ok()) return stored.status();
  if (!stored->has_value()) {
    return absl::NotFoundError(absl::StrCat(
        "policy version \"", absl::CHexEscape(id), "\" is not stored"));
  }
  return **std::move(stored);
}

absl::StatusOr<std::vector<PolicyVersion>> RocksPolicyVersionStore::List()
    const {
  std::vector<PolicyVersion> versions;
  std::unique_ptr<rocksdb::Iterator> it(
      db_->NewIterator(rocksdb::ReadOptions(), cf_));
  for (it->Seek(kVersionPrefix);
       it->Valid() && it->key().starts_with(kVersionPrefix); it->Next()) {
    PolicyVersionRecord record;
    if (!record.ParseFromArray(it->value().data(),
                               static_cast<int>(it->value().size()))) {
      return absl::DataLossError(absl::StrCat(
          "policy version record \"", absl::CHexEscape(it->key().ToString()),
          "\" does not parse"));
    }
    record.clear_files();
    versions.push_back(FromRecord(std::move(record), /*with_files=*/false));
  }
  if (absl::Status s = FromRocks(it->status(), "listing policy versions");
      !s.ok()) {
    return s;
  }
  std::sort(versions.begin(), versions.end(),
            [](const PolicyVersion& a, const PolicyVersion& b) {
              if (a.created_at != b.created_at) {
                return a.created_at > b.created_at;
              }
              return a.id < b.id;
            });
  return versions;
}

absl::StatusOr<std::string> RocksPolicyVersionStore::Activate(
    absl::string_view id, const Actor& actor, absl::Time now) {
  uint64_t ticket = 0;
  absl::StatusOr<std::string> previous;
  {
    absl::MutexLock lock(&mu_);
    previous = ActivateLocked(id, actor, now, &ticket);
  }
  if (!previous.ok()) return previous;
  if (absl::Status s = database_->AwaitDurable(ticket); !s.ok()) return s;
  return previous;
}

absl::StatusOr<std::string> RocksPolicyVersionStore::ActivateLocked(
    absl::string_view id, const Actor& actor, absl::Time now,
    uint64_t* ticket) {
  absl::StatusOr<std::optional<PolicyVersion>> target =
      Read(id, /*with_files=*/false);
  if (!target.ok()) return target.status();
  if (!target->has_value()) {
    return absl::NotFoundError(absl::StrCat(
        "policy version \"", absl::CHexEscape(id), "\" is not stored"));
  }
  if (active_ == id) {
    *ticket = database_->LatestTicket();
    return active_;
  }
  absl::StatusOr<AuditState> previous = CurrentState();
  if (!previous.ok()) return previous.status();
  rocksdb::WriteBatch batch;
  batch.Put(cf_, kActiveKey, std::string(id));
  // Activating the shadow version promotes it.
  const bool promotes = shadow_ == id;
  if (promotes) batch.Delete(cf_, kShadowKey);
  AuditState after{*target, promotes ? std::string() : shadow_};
  AddAudit(batch, now, "policy.activate", id, actor, *previous, after);
  if (absl::Status s = database_->Write(batch, ticket); !s.ok()) return s;
  if (promotes) shadow_.clear();
  std::string was = std::exchange(active_, std::string(id));
  return was;
}

absl::StatusOr<PutPolicyResult> RocksPolicyVersionStore::PutShadow(
    PolicyVersion version, const Actor& actor, absl::Time now) {
  uint64_t ticket = 0;
  absl::StatusOr<PutPolicyResult> result;
  {
    absl::MutexLock lock(&mu_);
    result = PutShadowLocked(std::move(version), actor, now, &ticket);
  }
  if (!result.ok()) return result;
  if (absl::Status s = database_->AwaitDurable(ticket); !s.ok()) return s;
  return result;
}

absl::StatusOr<PutPolicyResult> RocksPolicyVersionStore::PutShadowLocked(
    PolicyVersion version, const Actor& actor, absl::Time now,
    uint64_t* ticket) {
  if (absl::Status s = Normalize(version); !s.ok()) return s;
  if (active_.empty()) {
    return absl::FailedPreconditionError(
        "no policy version is active, so none can run in shadow beside it");
  }
  if (version.id == active_) {
    return absl::FailedPreconditionError(
        absl::StrCat("policy version \"", version.id,
                     "\" is the active version; a shadow version must differ "
                     "from it"));
  }
  absl::StatusOr<AuditState> previous = CurrentState();
  if (!previous.ok()) return previous.status();
  PutPolicyResult result;
  rocksdb::WriteBatch batch;
  if (absl::Status s = StageVersion(std::move(version), now, batch, result);
      !s.ok()) {
    return s;
  }
  if (shadow_ == result.version.id) {
    // Stored and the shadow already (so not new): nothing to write.
    *ticket = database_->LatestTicket();
    return result;
  }
  batch.Put(cf_, kShadowKey, result.version.id);
  AuditState after = *previous;
  after.shadow = result.version.id;
  AddAudit(batch, now, "policy.shadow", result.version.id, actor, *previous,
           after);
  if (absl::Status s = database_->Write(batch, ticket); !s.ok()) return s;
  shadow_ = result.version.id;
  return result;
}

absl::StatusOr<std::string> RocksPolicyVersionStore::ClearShadow(
    const Actor& actor, absl::Time now) {
  uint64_t ticket = 0;
  absl::StatusOr<std::string> previous;
  {
    absl::MutexLock lock(&mu_);
    previous = ClearShadowLocked(actor, now, &ticket);
  }
  if (!previous.ok()) return previous;
  if (absl::Status s = database_->AwaitDurable(ticket); !s.ok()) return s;
  return previous;
}

absl::StatusOr<std::string> RocksPolicyVersionStore::ClearShadowLocked(
    const Actor& actor, absl::Time now, uint64_t* ticket) {
  if (shadow_.empty()) {
    *ticket = database_->LatestTicket();
    return std::string();
  }
  absl::StatusOr<AuditState> previous = CurrentState();
  if (!previous.ok()) return previous.status();
  rocksdb::WriteBatch batch;
  batch.Delete(cf_, kShadowKey);
  AuditState after = *previous;
  after.shadow.clear();
  AddAudit(batch, now, "policy.shadow.stop", shadow_, actor, *previous, after);
  if (absl::Status s = database_->Write(batch, ticket); !s.ok()) return s;
  return std::exchange(shadow_, std::string());
}

}  // namespace

absl::StatusOr<std::unique_ptr<PolicyVersionStore>> NewRocksPolicyVersionStore(
    std::shared_ptr<RocksDatabase> database) {
  auto store = std::make_unique<RocksPolicyVersionStore>(std::move(database));
  if (absl::Status s = store->Load(); !s.ok()) return s;
  return store;
}

}  // namespace bursar::storage
