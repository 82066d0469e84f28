#include "server/policy_admin.h"

#include <algorithm>
#include <utility>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "server/log.h"
#include "server/policy_files.h"
#include "server/time_format.h"

namespace bursar::server {
namespace {

using LF = LogField;

constexpr char kStartupAuthor[] = "bursard --policy_dir";
constexpr char kStartupActor[] = "bursard";

std::string OrUnknown(const std::string& name) {
  return name.empty() ? "unknown" : name;
}

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
                                 bool active) {
  v1::PolicyVersion out;
  out.set_version(version.id);
  out.set_author(version.author);
  out.set_message(version.message);
  out.set_created_at(FormatRfc3339(version.created_at));
  out.set_active(active);
  return out;
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

v1::Diagnostic DiagnosticToProto(const policy::Diagnostic& diagnostic) {
  v1::Diagnostic out;
  out.set_severity(diagnostic.severity == policy::Diagnostic::Severity::kError
                       ? v1::Diagnostic::SEVERITY_ERROR
                       : v1::Diagnostic::SEVERITY_WARNING);
  out.set_path(diagnostic.path);
  out.set_line(diagnostic.line);
  out.set_column(diagnostic.column);
  out.set_field(diagnostic.field);
  out.set_message(diagnostic.message);
  return out;
}

absl::Status PolicyAdmin::PushPolicy(const v1::PushPolicyRequest& request,
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

  absl::MutexLock lock(&mu_);
  absl::StatusOr<storage::PutPolicyResult> put = store_->Put(
      ToStored(id, files, OrUnknown(request.author()), request.message()),
      /*activate=*/true,
      storage::Actor{OrUnknown(request.author()), request.message()},
      clock_->Now());
  if (!put.ok()) return put.status();
  if (registry_->Active() == nullptr || registry_->Active()->version() != id) {
    registry_->Activate(compiled.policy);
  }
  response->set_version(id);
  response->set_created(put->created);
  response->set_previous_version(put->previous_active);
  if (put->previous_active != id) {
    Log(LogLevel::kInfo, "policy activated",
        {LF{"version", id}, LF{"previous", put->previous_active},
         LF{"by", OrUnknown(request.author())},
         LF{"new", put->created ? "true" : "false"},
         LF{"message", request.message()}});
  }
  return absl::OkStatus();
}

absl::Status PolicyAdmin::GetPolicy(const v1::GetPolicyRequest& request,
                                    v1::GetPolicyResponse* response) {
  if (request.version().size() > storage::kMaxPolicyVersionIdBytes) {
    return absl::InvalidArgumentError(absl::StrCat(
        "version: ", request.version().size(), " bytes; versions have at most ",
        storage::kMaxPolicyVersionIdBytes));
  }
  const std::string active = store_->ActiveVersion();
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
  *response->mutable_version() = VersionToProto(*version, id == active);
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
  absl::StatusOr<std::vector<storage::PolicyVersion>> versions = store_->List();
  if (!versions.ok()) return versions.status();
  for (const storage::PolicyVersion& version : *versions) {
    *response->add_versions() = VersionToProto(version, version.id == active);
  }
  return absl::OkStatus();
}

absl::Status PolicyAdmin::ActivatePolicyVersion(
    const v1::ActivatePolicyVersionRequest& request,
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
  if (request.actor().size() > kMaxPolicyAuthorBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("actor: ", request.actor().size(), " bytes; at most ",
                     kMaxPolicyAuthorBytes));
  }
  if (request.reason().size() > kMaxPolicyMessageBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("reason: ", request.reason().size(), " bytes; at most ",
                     kMaxPolicyMessageBytes));
  }
  const storage::Actor actor{OrUnknown(request.actor()), request.reason()};

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
  std::string previous;
  storage::PolicyVersion activated = *stored;
  if (id == stored->id) {
    absl::StatusOr<std::string> was =
        store_->Activate(stored->id, actor, clock_->Now());
    if (!was.ok()) return was.status();
    previous = *std::move(was);
  } else {
    // This binary hashes the same files differently (the loader changed):
    // they run as the version Check will report, stored under that id.
    absl::StatusOr<storage::PutPolicyResult> put = store_->Put(
        ToStored(id, FromStored(*stored), stored->author, stored->message),
        /*activate=*/true, actor, clock_->Now());
    if (!put.ok()) return put.status();
    previous = put->previous_active;
    activated = put->version;
  }
  if (registry_->Active() == nullptr || registry_->Active()->version() != id) {
    registry_->Activate(compiled.policy);
  }
  *response->mutable_version() = VersionToProto(activated, /*active=*/true);
  response->set_previous_version(previous);
  if (previous != id) {
    Log(LogLevel::kInfo, "policy activated",
        {LF{"version", id}, LF{"previous", previous}, LF{"by", actor.name},
         LF{"reason", actor.reason}});
  }
  return absl::OkStatus();
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

}  // namespace

absl::StatusOr<StartupPolicy> LoadStartupPolicy(
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

}  // namespace bursar::server
