#include "server/policy_admin.h"

#include <algorithm>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "server/auth/audit_actor.h"
#include "server/log.h"
#include "server/policy_files.h"
#include "server/shadow_stats.h"
#include "server/time_format.h"

namespace bursar::server {
namespace {

using LF = LogField;

constexpr char kStartupAuthor[] = "bursard --policy_dir";
constexpr char kStartupActor[] = "bursard";

// Every error diagnostic, one per line, indented.
std::string ErrorList(const std::vector<policy::Diagnostic>& diagnostics) {
  std::vector<std::string> errors;
  for (const policy::Diagnostic& d : diagnostics) {
    if (d.severity == policy::Diagnostic::Severity::kError) {
      errors.push_back(policy::FormatDiagnostic(d));
    }
  }
  return absl::StrJoin(errors, "\n  ");
}

std::vector<policy::Diagnostic> Warnings(
    const std::vector<policy::Diagnostic>& diagnostics) {
  std::vector<policy::Diagnostic> warnings;
  for (const policy::Diagnostic& d : diagnostics) {
    if (d.severity == policy::Diagnostic::Severity::kWarning) {
      warnings.push_back(d);
    }
  }
  return warnings;
}

// The files that make a version: policy tests are left out (they do not
// count towards the content hash, so storing them would make one version
// stand for different file sets).
std::vector<policy::SourceFile> VersionFiles(
    std::vector<policy::SourceFile> files) {
  std::vector<policy::SourceFile> kept;
  kept.reserve(files.size());
  for (policy::SourceFile& file : files) {
    if (!IsPolicyTestFile(file.path)) kept.push_back(std::move(file));
  }
  return kept;
}

storage::PolicyVersion ToStored(const std::string& id,
                                const std::vector<policy::SourceFile>& files,
                                std::string author, std::string message) {
  storage::PolicyVersion version;
  version.id = id;
  for (const policy::SourceFile& file : files) {
    version.files.push_back({file.path, file.content});
  }
  version.author = std::move(author);
  version.message = std::move(message);
  return version;
}

std::vector<policy::SourceFile> FromStored(
    const storage::PolicyVersion& version) {
  std::vector<policy::SourceFile> files;
  files.reserve(version.files.size());
  for (const storage::PolicyFile& file : version.files) {
    files.push_back({file.path, file.content});
  }
  return files;
}

v1::PolicyVersion VersionToProto(const storage::PolicyVersion& version,
                                 bool active, bool shadow) {
  v1::PolicyVersion out;
  out.set_version(version.id);
  out.set_author(version.author);
  out.set_message(version.message);
  out.set_created_at(FormatRfc3339(version.created_at));
  out.set_active(active);
  out.set_shadow(shadow);
  return out;
}

void FillPlan(const ShadowPlanSummary& plan, v1::ShadowPlan* out) {
  if (!plan.error.empty()) {
    out->set_error(plan.error);
    return;
  }
  out->set_verdict(plan.allowed ? v1::VERDICT_ALLOW : v1::VERDICT_DENY);
  out->set_model(plan.model);
  out->set_max_output_tokens(plan.max_output_tokens);
  out->set_estimated_cost_nanos(plan.estimated_cost_nanos);
  out->set_deny_rule(plan.deny_rule);
  out->set_deny_message(plan.deny_message);
}

absl::Status ValidatePath(absl::string_view path, int index,
                          absl::flat_hash_set<absl::string_view>& seen) {
  const std::string field = absl::StrCat("files[", index, "].path");
  if (path.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat(field,
                     ": empty; give the file's path relative to the policy "
                     "directory, e.g. pricing.yaml"));
  }
  if (path.size() > kMaxPolicyPathBytes) {
    return absl::InvalidArgumentError(absl::StrCat(
        field, ": ", path.size(), " bytes; at most ", kMaxPolicyPathBytes));
  }
  if (path.front() == '/') {
    return absl::InvalidArgumentError(
        absl::StrCat(field, ": \"", path,
                     "\" is absolute; give it relative to the policy "
                     "directory, e.g. pricing.yaml"));
  }
  for (char c : path) {
    const auto u = static_cast<unsigned char>(c);
    if (u < 0x20 || u == 0x7f || c == '\\') {
      return absl::InvalidArgumentError(absl::StrCat(
          field, ": \"", absl::CHexEscape(path),
          "\" has a control character or a backslash; separate directories "
          "with '/'"));
    }
  }
  for (absl::string_view part : absl::StrSplit(path, '/')) {
    if (part.empty() || part == "." || part == "..") {
      return absl::InvalidArgumentError(absl::StrCat(
          field, ": \"", path,
          "\" has an empty, \".\" or \"..\" part; give a plain relative "
          "path such as teams/search.yaml"));
    }
  }
  if (!absl::EndsWith(path, ".yaml") && !absl::EndsWith(path, ".yml")) {
    return absl::InvalidArgumentError(absl::StrCat(
        field, ": \"", path, "\" is not a .yaml or .yml policy file"));
  }
  if (!seen.insert(path).second) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, ": \"", path, "\" is given twice"));
  }
  return absl::OkStatus();
}

// INVALID_ARGUMENT for an actor or reason over its size limit.
absl::Status ValidateActor(absl::string_view actor, absl::string_view reason) {
  if (actor.size() > kMaxPolicyAuthorBytes) {
    return absl::InvalidArgumentError(absl::StrCat(
        "actor: ", actor.size(), " bytes; at most ", kMaxPolicyAuthorBytes));
  }
  if (reason.size() > kMaxPolicyMessageBytes) {
    return absl::InvalidArgumentError(absl::StrCat(
        "reason: ", reason.size(), " bytes; at most ", kMaxPolicyMessageBytes));
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status ValidatePushRequest(const v1::PushPolicyRequest& request) {
  if (request.files().empty()) {
    return absl::InvalidArgumentError(
        "files: empty; push the files of a policy directory (at least one "
        ".yaml file)");
  }
  if (request.files_size() > kMaxPolicyFiles) {
    return absl::InvalidArgumentError(absl::StrCat(
        "files: ", request.files_size(), " files; at most ", kMaxPolicyFiles));
  }
  if (request.author().size() > kMaxPolicyAuthorBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("author: ", request.author().size(), " bytes; at most ",
                     kMaxPolicyAuthorBytes));
  }
  if (request.message().size() > kMaxPolicyMessageBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("message: ", request.message().size(), " bytes; at most ",
                     kMaxPolicyMessageBytes));
  }
  absl::flat_hash_set<absl::string_view> seen;
  size_t total = 0;
  for (int i = 0; i < request.files_size(); ++i) {
    const v1::PolicyFile& file = request.files(i);
    if (absl::Status s = ValidatePath(file.path(), i, seen); !s.ok()) return s;
    if (file.content().size() > kMaxPolicyFileBytes) {
      return absl::InvalidArgumentError(
          absl::StrCat("files[", i, "].content: \"", file.path(), "\" has ",
                       file.content().size(), " bytes; at most ",
                       kMaxPolicyFileBytes, " per file"));
    }
    total += file.path().size() + file.content().size();
  }
  if (total > kMaxPolicyPushBytes) {
    return absl::InvalidArgumentError(absl::StrCat(
        "files: ", total, " bytes in all; at most ", kMaxPolicyPushBytes));
  }
  return absl::OkStatus();
}

absl::Status PolicyAdmin::PushPolicy(const v1::PushPolicyRequest& request,
                                     const auth::Caller& caller,
                                     v1::PushPolicyResponse* response) {
  if (absl::Status s = ValidatePushRequest(request); !s.ok()) return s;
  std::vector<policy::SourceFile> pushed;
  pushed.reserve(request.files_size());
  for (const v1::PolicyFile& file : request.files()) {
    pushed.push_back({file.path(), file.content()});
  }
  const std::vector<policy::SourceFile> files = VersionFiles(std::move(pushed));
  if (files.empty()) {
    return absl::InvalidArgumentError(
        "files: only policy tests (*_test.yaml); push the policy files too");
  }

  policy::CompileResult compiled = policy::CompilePolicy(files);
  for (const policy::Diagnostic& d : compiled.diagnostics) {
    *response->add_diagnostics() = DiagnosticToProto(d);
  }
  if (compiled.policy == nullptr) {
    // Nothing changes. A dry run answers with the diagnostics; a real push
    // is FAILED_PRECONDITION (DESIGN.md section 5) listing every error.
    if (request.dry_run()) return absl::OkStatus();
    const std::string errors = ErrorList(compiled.diagnostics);
    const size_t count = std::count(errors.begin(), errors.end(), '\n') +
                         (errors.empty() ? 0 : 1);
    return absl::FailedPreconditionError(absl::StrCat(
        count, count == 1 ? " error" : " errors",
        "; the policy does not compile and nothing changed:\n  ", errors));
  }
  const std::string& id = compiled.policy->version();
  response->set_compiled_version(id);
  if (request.dry_run()) return absl::OkStatus();

  // The version's author is who pushed it (the caller, with authentication).
  const storage::Actor actor =
      auth::AuditActor(caller, request.author(), request.message());
  absl::MutexLock lock(&mu_);
  const absl::Time now = clock_->Now();
  if (request.shadow()) {
    absl::StatusOr<storage::PutPolicyResult> put = store_->PutShadow(
        ToStored(id, files, actor.name, request.message()), actor, now);
    if (!put.ok()) return put.status();
    const std::shared_ptr<const ShadowRun> current = registry_->Shadow();
    if (current == nullptr || current->version() != id) {
      registry_->SetShadow(std::make_shared<const ShadowRun>(
          compiled.policy, registry_->Active()->version(), now));
    }
    response->set_version(id);
    response->set_created(put->created);
    response->set_previous_version(put->previous_active);
    response->set_previous_shadow_version(put->previous_shadow);
    if (put->previous_shadow != id) {
      Log(LogLevel::kInfo, "policy shadow started",
          {LF{"version", id}, LF{"active", put->previous_active},
           LF{"previous_shadow", put->previous_shadow}, LF{"by", actor.name},
           LF{"role", actor.role}, LF{"new", put->created ? "true" : "false"},
           LF{"message", request.message()}});
    }
    return absl::OkStatus();
  }
  absl::StatusOr<storage::PutPolicyResult> put =
      store_->Put(ToStored(id, files, actor.name, request.message()),
                  /*activate=*/true, actor, now);
  if (!put.ok()) return put.status();
  if (registry_->Active() == nullptr || registry_->Active()->version() != id) {
    registry_->Activate(compiled.policy, now);
  }
  SyncShadowLocked(now);
  response->set_version(id);
  response->set_created(put->created);
  response->set_previous_version(put->previous_active);
  response->set_previous_shadow_version(put->previous_shadow);
  if (put->previous_active != id) {
    Log(LogLevel::kInfo, "policy activated",
        {LF{"version", id}, LF{"previous", put->previous_active},
         LF{"by", actor.name}, LF{"role", actor.role},
         LF{"new", put->created ? "true" : "false"},
         LF{"promoted_shadow", put->previous_shadow == id ? "true" : "false"},
         LF{"message", request.message()}});
  }
  return absl::OkStatus();
}

void PolicyAdmin::SyncShadowLocked(absl::Time now) {
  const std::shared_ptr<const ShadowRun> current = registry_->Shadow();
  if (current == nullptr) return;
  const std::string stored = store_->ShadowVersion();
  if (stored != current->version()) {
    // Promoted (the store cleared it when it became active).
    registry_->SetShadow(nullptr);
    return;
  }
  const std::string& active = registry_->Active()->version();
  if (current->active_version() != active) {
    registry_->SetShadow(
        std::make_shared<const ShadowRun>(current->policy(), active, now));
  }
}

absl::Status PolicyAdmin::GetPolicy(const v1::GetPolicyRequest& request,
                                    v1::GetPolicyResponse* response) {
  if (request.version().size() > storage::kMaxPolicyVersionIdBytes) {
    return absl::InvalidArgumentError(absl::StrCat(
        "version: ", request.version().size(), " bytes; versions have at most ",
        storage::kMaxPolicyVersionIdBytes));
  }
  const std::string active = store_->ActiveVersion();
  const std::string shadow = store_->ShadowVersion();
  const std::string id = request.version().empty() ? active : request.version();
  if (id.empty()) {
    return absl::NotFoundError("no policy version is active yet");
  }
  absl::StatusOr<storage::PolicyVersion> version = store_->Get(id);
  if (!version.ok()) {
    if (absl::IsNotFound(version.status())) {
      return absl::NotFoundError(absl::StrCat(
          "policy version \"", id,
          "\" is not stored; ListPolicyVersions lists the stored versions"));
    }
    return version.status();
  }
  *response->mutable_version() =
      VersionToProto(*version, id == active, id == shadow);
  for (const storage::PolicyFile& file : version->files) {
    v1::PolicyFile* out = response->add_files();
    out->set_path(file.path);
    out->set_content(file.content);
  }
  return absl::OkStatus();
}

absl::Status PolicyAdmin::ListPolicyVersions(
    const v1::ListPolicyVersionsRequest& /*request*/,
    v1::ListPolicyVersionsResponse* response) {
  const std::string active = store_->ActiveVersion();
  const std::string shadow = store_->ShadowVersion();
  absl::StatusOr<std::vector<storage::PolicyVersion>> versions = store_->List();
  if (!versions.ok()) return versions.status();
  for (const storage::PolicyVersion& version : *versions) {
    *response->add_versions() =
        VersionToProto(version, version.id == active, version.id == shadow);
  }
  return absl::OkStatus();
}

absl::Status PolicyAdmin::ActivatePolicyVersion(
    const v1::ActivatePolicyVersionRequest& request, const auth::Caller& caller,
    v1::ActivatePolicyVersionResponse* response) {
  if (request.version().empty()) {
    return absl::InvalidArgumentError(
        "version: say which version to activate; ListPolicyVersions lists "
        "the stored versions");
  }
  if (request.version().size() > storage::kMaxPolicyVersionIdBytes) {
    return absl::InvalidArgumentError(absl::StrCat(
        "version: ", request.version().size(), " bytes; versions have at most ",
        storage::kMaxPolicyVersionIdBytes));
  }
  if (absl::Status s = ValidateActor(request.actor(), request.reason());
      !s.ok()) {
    return s;
  }
  const storage::Actor actor =
      auth::AuditActor(caller, request.actor(), request.reason());

  absl::MutexLock lock(&mu_);
  absl::StatusOr<storage::PolicyVersion> stored =
      store_->Get(request.version());
  if (!stored.ok()) {
    if (absl::IsNotFound(stored.status())) {
      return absl::NotFoundError(absl::StrCat(
          "policy version \"", request.version(),
          "\" is not stored; ListPolicyVersions lists the stored versions"));
    }
    return stored.status();
  }
  policy::CompileResult compiled = policy::CompilePolicy(FromStored(*stored));
  if (compiled.policy == nullptr) {
    return absl::FailedPreconditionError(absl::StrCat(
        "policy version ", stored->id,
        " does not compile with this bursard; push a corrected policy "
        "instead:\n  ",
        ErrorList(compiled.diagnostics)));
  }
  const std::string& id = compiled.policy->version();
  const absl::Time now = clock_->Now();
  const std::string shadow_before = store_->ShadowVersion();
  std::string previous;
  storage::PolicyVersion activated = *stored;
  if (id == stored->id) {
    absl::StatusOr<std::string> was = store_->Activate(stored->id, actor, now);
    if (!was.ok()) return was.status();
    previous = *std::move(was);
  } else {
    // This binary hashes the same files differently (the loader changed):
    // they run as the version Check will report, stored under that id.
    absl::StatusOr<storage::PutPolicyResult> put = store_->Put(
        ToStored(id, FromStored(*stored), stored->author, stored->message),
        /*activate=*/true, actor, now);
    if (!put.ok()) return put.status();
    previous = put->previous_active;
    activated = put->version;
    if (shadow_before == stored->id) {
      // The shadow's files, stored again under this binary's id: promoted.
      absl::StatusOr<std::string> cleared = store_->ClearShadow(actor, now);
      if (!cleared.ok()) return cleared.status();
    }
  }
  if (registry_->Active() == nullptr || registry_->Active()->version() != id) {
    registry_->Activate(compiled.policy, now);
  }
  SyncShadowLocked(now);
  const bool promoted =
      shadow_before == stored->id && store_->ShadowVersion().empty();
  *response->mutable_version() =
      VersionToProto(activated, /*active=*/true, /*shadow=*/false);
  response->set_previous_version(previous);
  response->set_promoted_shadow(promoted);
  if (previous != id) {
    Log(LogLevel::kInfo, "policy activated",
        {LF{"version", id}, LF{"previous", previous}, LF{"by", actor.name},
         LF{"role", actor.role},
         LF{"promoted_shadow", promoted ? "true" : "false"},
         LF{"reason", actor.reason}});
  }
  return absl::OkStatus();
}

absl::Status PolicyAdmin::StopShadow(const v1::StopShadowRequest& request,
                                     const auth::Caller& caller,
                                     v1::StopShadowResponse* response) {
  if (absl::Status s = ValidateActor(request.actor(), request.reason());
      !s.ok()) {
    return s;
  }
  const storage::Actor actor =
      auth::AuditActor(caller, request.actor(), request.reason());
  absl::MutexLock lock(&mu_);
  const std::shared_ptr<const ShadowRun> current = registry_->Shadow();
  absl::StatusOr<std::string> was = store_->ClearShadow(actor, clock_->Now());
  if (!was.ok()) return was.status();
  registry_->SetShadow(nullptr);
  response->set_version(*was);
  if (current != nullptr) {
    FillShadowReport(*current, 0, response->mutable_final_report());
  }
  if (!was->empty()) {
    const ShadowCounts counts = current != nullptr
                                    ? current->stats().Snapshot(1).counts
                                    : ShadowCounts();
    Log(LogLevel::kInfo, "policy shadow stopped",
        {LF{"version", *was}, LF{"by", actor.name}, LF{"role", actor.role},
         LF{"reason", actor.reason},
         LF{"compared", absl::StrCat(counts.compared)},
         LF{"differing", absl::StrCat(counts.differing)}});
  }
  return absl::OkStatus();
}

absl::Status PolicyAdmin::GetShadowReport(
    const v1::GetShadowReportRequest& request,
    v1::GetShadowReportResponse* response) {
  if (request.sample_limit() < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("sample_limit: ", request.sample_limit(),
                     " is negative; 0 returns every sample kept"));
  }
  const std::shared_ptr<const ShadowRun> run = registry_->Shadow();
  if (run == nullptr) return absl::OkStatus();
  FillShadowReport(*run, static_cast<size_t>(request.sample_limit()), response);
  return absl::OkStatus();
}

void FillShadowReport(const ShadowRun& run, size_t sample_limit,
                      v1::GetShadowReportResponse* response) {
  const ShadowSnapshot snapshot = run.stats().Snapshot(sample_limit);
  response->set_version(run.version());
  response->set_active_version(run.active_version());
  response->set_since(FormatRfc3339(run.since()));
  response->set_checks_compared(snapshot.counts.compared);
  response->set_checks_differing(snapshot.counts.differing);
  response->set_sample_capacity(static_cast<int32_t>(
      std::min<size_t>(run.stats().sample_capacity(), 1 << 30)));
  v1::ShadowDifferences* by_kind = response->mutable_differences();
  const auto count = [&](ShadowDifference bit) {
    for (int kind = 0; kind < kShadowDifferenceKinds; ++kind) {
      if ((1u << kind) == bit) return snapshot.counts.by_kind[kind];
    }
    return int64_t{0};
  };
  by_kind->set_verdict(count(kShadowVerdict));
  by_kind->set_deny_rule(count(kShadowDenyRule));
  by_kind->set_model(count(kShadowModel));
  by_kind->set_max_output_tokens(count(kShadowMaxOutputTokens));
  by_kind->set_estimated_cost(count(kShadowEstimatedCost));
  by_kind->set_error(count(kShadowError));
  for (const ShadowSample& sample : snapshot.samples) {
    v1::ShadowSample* out = response->add_samples();
    out->set_time(FormatRfc3339(sample.time));
    out->set_request_id(sample.request_id);
    out->set_model(sample.model);
    out->set_provider(sample.provider);
    for (const auto& [key, value] : sample.labels) {
      (*out->mutable_labels())[key] = value;
    }
    out->set_priority(sample.priority);
    out->set_input_tokens(sample.input_tokens);
    out->set_max_output_tokens(sample.max_output_tokens);
    for (int kind = 0; kind < kShadowDifferenceKinds; ++kind) {
      if ((sample.differences >> kind) & 1u) {
        out->add_differences(std::string(ShadowDifferenceName(1u << kind)));
      }
    }
    FillPlan(sample.active, out->mutable_active());
    FillPlan(sample.shadow, out->mutable_shadow());
  }
}

// --- Start-up -------------------------------------------------------------

absl::StatusOr<PolicySource> ParsePolicySource(absl::string_view text) {
  if (text == "store") return PolicySource::kStore;
  if (text == "dir") return PolicySource::kDir;
  return absl::InvalidArgumentError(
      absl::StrCat("policy source \"", text, "\" is not one of store, dir"));
}

namespace {

// --policy_dir, compiled, stored and made the active version.
absl::StatusOr<StartupPolicy> StartFromDir(storage::PolicyVersionStore* store,
                                           const std::string& policy_dir,
                                           absl::string_view why,
                                           absl::Time now) {
  absl::StatusOr<std::vector<policy::SourceFile>> read =
      ReadPolicyDir(policy_dir);
  if (!read.ok()) return read.status();
  const std::vector<policy::SourceFile> files = VersionFiles(*std::move(read));
  if (files.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("policy directory \"", policy_dir,
                     "\" has only policy tests (*_test.yaml), no policy file"));
  }
  policy::CompileResult compiled = policy::CompilePolicy(files);
  if (compiled.policy == nullptr) {
    return absl::FailedPreconditionError(
        absl::StrCat("policies in \"", policy_dir, "\" do not compile:\n  ",
                     ErrorList(compiled.diagnostics)));
  }
  const std::string& id = compiled.policy->version();
  absl::StatusOr<storage::PutPolicyResult> put = store->Put(
      ToStored(id, files, kStartupAuthor,
               absl::StrCat("--policy_dir=", policy_dir, " at start-up")),
      /*activate=*/true, storage::Actor{kStartupActor, std::string(why)}, now);
  if (!put.ok()) return put.status();
  StartupPolicy startup;
  startup.policy = compiled.policy;
  startup.source = "dir";
  startup.previous_version = put->previous_active;
  startup.warnings = Warnings(compiled.diagnostics);
  return startup;
}

// Why --policy_dir did not run, or "" if it compiles to `active`.
std::string CompareDir(const std::string& policy_dir,
                       const std::string& active) {
  absl::StatusOr<std::vector<policy::SourceFile>> read =
      ReadPolicyDir(policy_dir);
  if (!read.ok()) {
    return absl::StrCat("--policy_dir is not used (", read.status().message(),
                        ")");
  }
  const policy::CompileResult compiled =
      policy::CompilePolicy(VersionFiles(*std::move(read)));
  if (compiled.policy == nullptr) {
    return "--policy_dir is not used (it does not compile)";
  }
  if (compiled.policy->version() == active) return "";
  return absl::StrCat("--policy_dir is not used (it is version ",
                      compiled.policy->version(),
                      "); --policy_source=dir would run it");
}

// The start-up rule for the active version (docs/decisions/004).
absl::StatusOr<StartupPolicy> LoadActivePolicy(
    storage::PolicyVersionStore* store, const std::string& policy_dir,
    PolicySource source, absl::Time now) {
  const std::string active = store->ActiveVersion();
  if (source == PolicySource::kDir) {
    return StartFromDir(store, policy_dir, "--policy_source=dir", now);
  }
  if (active.empty()) {
    return StartFromDir(store, policy_dir,
                        "first start: no policy version stored", now);
  }

  absl::StatusOr<storage::PolicyVersion> stored = store->Get(active);
  if (!stored.ok()) return stored.status();
  policy::CompileResult compiled = policy::CompilePolicy(FromStored(*stored));
  if (compiled.policy == nullptr) {
    return absl::FailedPreconditionError(absl::StrCat(
        "the active policy version ", active,
        " (stored in the data directory) does not compile with this "
        "bursard; start with --policy_source=dir to replace it with "
        "--policy_dir:\n  ",
        ErrorList(compiled.diagnostics)));
  }
  StartupPolicy startup;
  startup.policy = compiled.policy;
  startup.source = "store";
  startup.previous_version = active;
  startup.warnings = Warnings(compiled.diagnostics);
  const std::string& id = compiled.policy->version();
  if (id != active) {
    // The same files hash differently with this binary: store them under
    // the id that Check will report, so the store and Check agree.
    absl::StatusOr<storage::PutPolicyResult> put = store->Put(
        ToStored(id, FromStored(*stored), stored->author, stored->message),
        /*activate=*/true,
        storage::Actor{kStartupActor,
                       absl::StrCat("version ", active, " compiles to ", id,
                                    " with this bursard")},
        now);
    if (!put.ok()) return put.status();
  }
  startup.dir_note = CompareDir(policy_dir, id);
  startup.dir_matches = startup.dir_note.empty();
  return startup;
}

// Compiles the stored shadow version into startup->shadow, or clears it in
// the store and says why in startup->shadow_note. Errors: the store cannot
// be read or written.
absl::Status RestoreShadow(storage::PolicyVersionStore* store, absl::Time now,
                           StartupPolicy* startup) {
  const std::string id = store->ShadowVersion();
  if (id.empty()) return absl::OkStatus();
  absl::StatusOr<storage::PolicyVersion> stored = store->Get(id);
  if (!stored.ok()) return stored.status();
  policy::CompileResult compiled = policy::CompilePolicy(FromStored(*stored));
  std::string problem;
  if (compiled.policy == nullptr) {
    problem = absl::StrCat("it does not compile with this bursard:\n  ",
                           ErrorList(compiled.diagnostics));
  } else if (compiled.policy->version() == startup->policy->version()) {
    problem = "it compiles to the active version";
  }
  if (!problem.empty()) {
    startup->shadow_note =
        absl::StrCat("shadow version ", id, " is dropped: ", problem);
    absl::StatusOr<std::string> cleared = store->ClearShadow(
        storage::Actor{kStartupActor,
                       absl::StrCat("shadow version ", id,
                                    " cannot be restored at start-up")},
        now);
    return cleared.status();
  }
  if (compiled.policy->version() != id) {
    // As for the active version: store the files under the id that this
    // binary computes, and shadow that.
    absl::StatusOr<storage::PutPolicyResult> put = store->PutShadow(
        ToStored(compiled.policy->version(), FromStored(*stored),
                 stored->author, stored->message),
        storage::Actor{
            kStartupActor,
            absl::StrCat("version ", id, " compiles to ",
                         compiled.policy->version(), " with this bursard")},
        now);
    if (!put.ok()) return put.status();
  }
  startup->shadow = compiled.policy;
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<StartupPolicy> LoadStartupPolicy(
    storage::PolicyVersionStore* store, const std::string& policy_dir,
    PolicySource source, absl::Time now) {
  absl::StatusOr<StartupPolicy> startup =
      LoadActivePolicy(store, policy_dir, source, now);
  if (!startup.ok()) return startup;
  if (absl::Status s = RestoreShadow(store, now, &*startup); !s.ok()) return s;
  return startup;
}

}  // namespace bursar::server
