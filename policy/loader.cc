#include "policy/loader.h"

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/string_view.h"
#include "absl/strings/strip.h"
#include "absl/time/civil_time.h"
#include "absl/time/time.h"
#include "policy/compiled_policy.h"
#include "policy/expr/expr.h"
#include "policy/money.h"
#include "policy/pricing.h"
#include "policy/variables.h"
#include "policy/yaml_limits.h"
#include "yaml-cpp/yaml.h"

namespace bursar::policy {
namespace {

constexpr absl::string_view kApiVersion = "bursar.dev/v1";
constexpr absl::string_view kPolicyKind = "Policy";
constexpr absl::string_view kPolicyTestKind = "PolicyTest";
constexpr absl::string_view kTestFileSuffix = "_test.yaml";
constexpr size_t kMaxPolicyNameLength = 63;
constexpr size_t kMaxModelNameLength = 256;
constexpr size_t kMaxTimeZoneNameLength = 64;

// A position in a source file; line and column are 1-based, 0 if unknown.
struct Location {
  std::string path;
  int line = 0;
  int column = 0;
};

std::string FormatLocation(const Location& location) {
  if (location.line <= 0) return location.path;
  if (location.column <= 0)
    return absl::StrCat(location.path, ":", location.line);
  return absl::StrCat(location.path, ":", location.line, ":", location.column);
}

// `"text"`, escaped so that control characters stay visible.
std::string Quote(absl::string_view text) {
  return absl::StrCat("\"", absl::CHexEscape(text), "\"");
}

// What a node is, for "expected X, got Y" messages.
std::string Describe(const YAML::Node& node) {
  switch (node.Type()) {
    case YAML::NodeType::Scalar:
      return Quote(node.Scalar());
    case YAML::NodeType::Sequence:
      return "a list";
    case YAML::NodeType::Map:
      return "a mapping";
    case YAML::NodeType::Null:
    case YAML::NodeType::Undefined:
      break;
  }
  return "nothing";
}

// yaml-cpp marks quoted (non-plain) scalars with the non-specific tag "!".
bool IsQuoted(const YAML::Node& node) { return node.Tag() == "!"; }

std::string JoinField(absl::string_view parent, absl::string_view key) {
  return parent.empty() ? std::string(key) : absl::StrCat(parent, ".", key);
}

// One `key: value` entry of a YAML mapping.
struct Entry {
  std::string key;
  YAML::Node key_node;
  YAML::Node value;
};

// A key a mapping may hold.
struct FieldSpec {
  absl::string_view key;
  bool required;
};

// FNV-1a, 64 bits.
class Fnv1a64 {
 public:
  void Add(absl::string_view bytes) {
    for (unsigned char byte : bytes) {
      hash_ ^= byte;
      hash_ *= 0x100000001b3ULL;
    }
  }
  uint64_t hash() const { return hash_; }

 private:
  uint64_t hash_ = 0xcbf29ce484222325ULL;
};

// Compiles the `kind: Policy` documents of a set of files, in the order
// they are added, collecting every diagnostic rather than stopping at the
// first. Adding a top-level section takes an entry in kSections below and
// the Compile* method it names; sections that merge across files keep their
// state here (see models_ and ClaimOnce).
class PolicyCompiler {
 public:
  void AddFile(const SourceFile& file);
  // Reports a path given more than once: its diagnostics would be ambiguous.
  void AddDuplicatePath(const std::string& path) {
    Error(Location{path}, "",
          "this file is given twice; pass each policy file once");
  }
  CompileResult Finish(std::string version);

 private:
  using SectionCompiler = void (PolicyCompiler::*)(const Entry& entry);
  struct Section {
    absl::string_view key;
    bool required;
    SectionCompiler compile;
  };
  static const Section kSections[];

  // A model's price, and where it was first written.
  struct PricedModel {
    Location location;
    std::optional<ModelPrice> price;  // empty if it had errors
  };

  void CompileDocument(const YAML::Node& root);

  // Top-level sections.
  void CompileApiVersion(const Entry& entry);
  void CompileKind(const Entry& entry);
  void CompileMetadata(const Entry& entry);
  void CompileTimezone(const Entry& entry);
  void CompilePricing(const Entry& entry);
  void CompilePricingAsOf(const Entry& entry);
  void CompileDefaults(const Entry& entry);
  void CompileRoutes(const Entry& entry);
  void CompileSpendSlos(const Entry& entry);
  void CompileOnExhausted(const Entry& entry);
  void CompileDeny(const Entry& entry);
  void CompileRateLimits(const Entry& entry);
  void CompileConcurrency(const Entry& entry);
  void CompileAlerts(const Entry& entry);
  void CompileAlerting(const Entry& entry);
  // A ratio written as a percentage (`30%`) or a fraction (`0.3`), in
  // (0, max].
  std::optional<double> ReadRatio(const Entry& entry, absl::string_view field,
                                  double max);
  std::optional<std::string> ReadSeverity(const Entry& entry,
                                          absl::string_view field);
  void CompileAttribution(const Entry& entry);

  void CompileModelPrice(const Entry& model);
  std::optional<ExhaustedStep> CompileExhaustedStep(const YAML::Node& node,
                                                    const std::string& field);

  // The items of a list section, each with its field path ("routes[2]").
  std::optional<std::vector<std::pair<std::string, YAML::Node>>> ReadList(
      const Entry& entry, absl::string_view field, absl::string_view expected);
  // A rule's name: unique across every rule section of every file.
  std::optional<std::string> ReadRuleName(const Entry& entry,
                                          absl::string_view field);
  // A `when:` condition compiled against the variables of `scope`; errors
  // point into the expression.
  std::optional<Condition> ReadCondition(const Entry& entry,
                                         absl::string_view field,
                                         VariableScope scope,
                                         expr::Type type = expr::Type::kBool);
  // model -> model; every model must be priced (checked at Finish).
  std::optional<ModelMap> ReadModelMap(const Entry& entry,
                                       absl::string_view field);
  // A model that must be priced (checked at Finish).
  std::optional<std::string> ReadModelRef(const Entry& entry,
                                          absl::string_view field);
  std::optional<int64_t> ReadCount(const Entry& entry, absl::string_view field,
                                   int64_t min, int64_t max,
                                   absl::string_view unit);

  // Reading typed values; each reports its own errors and returns nullopt.
  std::optional<std::string> ReadName(const Entry& entry,
                                      absl::string_view field);
  std::optional<std::string> ReadString(const Entry& entry,
                                        absl::string_view field);
  std::optional<int64_t> ReadUsdPerMillionTokens(const Entry& entry,
                                                 absl::string_view field);
  // The entries of a mapping, without duplicate or non-string keys (both
  // reported). nullopt, reported, if `node` is not a mapping.
  std::optional<std::vector<Entry>> ReadMapping(const YAML::Node& node,
                                                const Location& where,
                                                absl::string_view field,
                                                absl::string_view expected);
  // As ReadMapping, also reporting keys not in `specs` and required keys
  // that are missing; the result is keyed by field name.
  template <typename Spec, size_t N>
  std::optional<absl::flat_hash_map<std::string, Entry>> ReadFields(
      const YAML::Node& node, const Location& where, absl::string_view field,
      const Spec (&specs)[N], absl::string_view expected);

  // Reports a policy-wide setting written a second time; records the first.
  bool ClaimOnce(std::optional<Location>& first, const Entry& entry,
                 absl::string_view field);

  Location Where(const YAML::Node& node) const;
  // Where an entry's value is; for a missing value, where its key is.
  Location WhereValue(const Entry& entry) const;
  void Report(Diagnostic::Severity severity, const Location& where,
              absl::string_view field, std::string message);
  void Error(const Location& where, absl::string_view field,
             std::string message) {
    Report(Diagnostic::Severity::kError, where, field, std::move(message));
  }
  void Warning(const Location& where, absl::string_view field,
               std::string message) {
    Report(Diagnostic::Severity::kWarning, where, field, std::move(message));
  }

  const SourceFile* file_ = nullptr;  // the file being compiled
  std::vector<Diagnostic> diagnostics_;
  bool has_errors_ = false;
  // Files or documents whose content could not be read at all; while there
  // are any, "no model is priced" would be noise.
  int unreadable_ = 0;
  int models_seen_ = 0;
  // Every model named in a pricing section, valid or not, so that pricing a
  // model twice is reported even when one of the two has errors.
  absl::flat_hash_map<std::string, PricedModel> models_;
  std::optional<Location> defaults_location_;
  Defaults defaults_;
  std::optional<Location> timezone_location_;
  std::optional<Location> on_exhausted_location_;
  std::optional<Location> alerting_location_;
  std::optional<Location> attribution_location_;
  PolicyRules rules_;
  // Rule names across sections, with where each was first given.
  absl::flat_hash_map<std::string, Location> rule_names_;
  // Models that rules name, checked against the catalog at Finish.
  std::vector<std::tuple<std::string, Location, std::string>> model_refs_;
};

const PolicyCompiler::Section PolicyCompiler::kSections[] = {
    {"apiVersion", true, &PolicyCompiler::CompileApiVersion},
    {"kind", true, &PolicyCompiler::CompileKind},
    {"metadata", true, &PolicyCompiler::CompileMetadata},
    {"timezone", false, &PolicyCompiler::CompileTimezone},
    {"pricing", false, &PolicyCompiler::CompilePricing},
    {"pricing_as_of", false, &PolicyCompiler::CompilePricingAsOf},
    {"defaults", false, &PolicyCompiler::CompileDefaults},
    {"routes", false, &PolicyCompiler::CompileRoutes},
    {"spend_slos", false, &PolicyCompiler::CompileSpendSlos},
    {"on_exhausted", false, &PolicyCompiler::CompileOnExhausted},
    {"deny", false, &PolicyCompiler::CompileDeny},
    {"rate_limits", false, &PolicyCompiler::CompileRateLimits},
    {"concurrency", false, &PolicyCompiler::CompileConcurrency},
    {"alerts", false, &PolicyCompiler::CompileAlerts},
    {"alerting", false, &PolicyCompiler::CompileAlerting},
    {"attribution", false, &PolicyCompiler::CompileAttribution},
};

constexpr FieldSpec kAttributionFields[] = {
    {"dimensions", false},
    {"max_values_per_dimension", false},
};

constexpr FieldSpec kRouteFields[] = {
    {"name", true}, {"when", true}, {"route_to", true}, {"description", false}};
constexpr FieldSpec kSloFields[] = {
    {"name", true}, {"budget", true},          {"when", true},
    {"then", true}, {"escalate_after", false}, {"description", false}};
constexpr FieldSpec kSloActionFields[] = {{"downgrade", false},
                                          {"cap_output_tokens", false}};
constexpr FieldSpec kDenyFields[] = {
    {"name", true}, {"when", true}, {"message", false}, {"description", false}};
constexpr FieldSpec kCapToFitFields[] = {{"min_output_tokens", false}};
constexpr FieldSpec kDenyStepFields[] = {{"message", false}};
constexpr FieldSpec kRateLimitFields[] = {
    {"name", true},
    {"when", false},
    {"key", false},
    {"requests_per_second", false},
    {"requests_per_minute", false},
    {"requests_per_hour", false},
    {"requests_per_day", false},
    {"tokens_per_second", false},
    {"tokens_per_minute", false},
    {"tokens_per_hour", false},
    {"tokens_per_day", false},
    {"description", false},
};
constexpr FieldSpec kConcurrencyFields[] = {{"name", true},
                                            {"when", false},
                                            {"max_in_flight", true},
                                            {"reserve", false},
                                            {"description", false}};
constexpr FieldSpec kAlertFields[] = {{"name", true},
                                      {"when", true},
                                      {"severity", false},
                                      {"budget", false},
                                      {"description", false}};

constexpr int64_t kMaxRate = 1'000'000'000'000;
constexpr int64_t kMaxSlots = 1'000'000;

constexpr FieldSpec kMetadataFields[] = {
    {"name", true},
    {"description", false},
};

constexpr FieldSpec kPriceFields[] = {
    {"provider", false},
    {"input", true},
    {"cached_input", false},
    {"output", true},
};

constexpr FieldSpec kDefaultsFields[] = {
    {"max_output_tokens", false},
    {"unknown_model", false},
};

void PolicyCompiler::AddFile(const SourceFile& file) {
  file_ = &file;
  std::vector<YAML::Node> documents;
  try {
    documents = LoadYamlWithinLimits(file.content);
  } catch (const YAML::Exception& e) {
    ++unreadable_;
    Location where{file.path};
    if (!e.mark.is_null()) {
      where.line = e.mark.line + 1;
      where.column = e.mark.column + 1;
    }
    const bool over_limit =
        dynamic_cast<const YamlLimitExceeded*>(&e) != nullptr;
    Error(where, "",
          over_limit ? e.msg : absl::StrCat("not valid YAML: ", e.msg));
    return;
  }
  const auto first_diagnostic =
      static_cast<std::ptrdiff_t>(diagnostics_.size());
  for (const YAML::Node& document : documents) {
    try {
      CompileDocument(document);
    } catch (const YAML::Exception& e) {
      // Not expected: the compiler checks node types before using them.
      Error(Where(document), "",
            absl::StrCat("internal error reading this document: ", e.what()));
    }
  }
  // A file's diagnostics in the order of its lines, whatever order the
  // checks ran in.
  std::stable_sort(diagnostics_.begin() + first_diagnostic, diagnostics_.end(),
                   [](const Diagnostic& a, const Diagnostic& b) {
                     return std::tie(a.line, a.column) <
                            std::tie(b.line, b.column);
                   });
}

void PolicyCompiler::CompileDocument(const YAML::Node& root) {
  if (root.IsNull()) return;  // an empty document, e.g. after a final `---`
  const Location where = Where(root);
  if (!root.IsMap()) {
    ++unreadable_;
    Error(where, "",
          absl::StrCat("expected a mapping with apiVersion, kind and "
                       "metadata, got ",
                       Describe(root)));
    return;
  }
  // Policy tests have their own schema and are run elsewhere.
  for (auto it = root.begin(); it != root.end(); ++it) {
    if (it->first.IsScalar() && it->first.Scalar() == "kind" &&
        it->second.IsScalar() && it->second.Scalar() == kPolicyTestKind) {
      return;
    }
  }
  auto fields = ReadFields(root, where, "", kSections,
                           "a mapping with apiVersion, kind and metadata");
  if (!fields.has_value()) return;
  for (const Section& section : kSections) {
    auto it = fields->find(section.key);
    if (it != fields->end()) (this->*section.compile)(it->second);
  }
}

void PolicyCompiler::CompileApiVersion(const Entry& entry) {
  std::optional<std::string> version = ReadString(entry, "apiVersion");
  if (version.has_value() && *version != kApiVersion) {
    Error(WhereValue(entry), "apiVersion",
          absl::StrCat("expected ", kApiVersion, ", got ", Quote(*version)));
  }
}

void PolicyCompiler::CompileKind(const Entry& entry) {
  std::optional<std::string> kind = ReadString(entry, "kind");
  if (kind.has_value() && *kind != kPolicyKind) {
    Error(WhereValue(entry), "kind",
          absl::StrCat("expected ", kPolicyKind, " (or ", kPolicyTestKind,
                       " for a policy test), got ", Quote(*kind)));
  }
}

void PolicyCompiler::CompileMetadata(const Entry& entry) {
  auto fields =
      ReadFields(entry.value, WhereValue(entry), "metadata", kMetadataFields,
                 "a mapping with a name and optional description");
  if (!fields.has_value()) return;
  if (auto it = fields->find("name"); it != fields->end()) {
    std::optional<std::string> name = ReadString(it->second, "metadata.name");
    if (name.has_value()) {
      const bool valid =
          !name->empty() && name->size() <= kMaxPolicyNameLength &&
          std::all_of(name->begin(), name->end(), [](char c) {
            return absl::ascii_islower(c) || absl::ascii_isdigit(c) || c == '-';
          });
      if (!valid) {
        Error(WhereValue(it->second), "metadata.name",
              absl::StrCat("expected 1 to ", kMaxPolicyNameLength,
                           " lowercase letters, digits or '-', e.g. "
                           "\"northstar-prod\", got ",
                           Quote(*name)));
      }
    }
  }
  if (auto it = fields->find("description"); it != fields->end()) {
    ReadString(it->second, "metadata.description");
  }
}

void PolicyCompiler::CompileTimezone(const Entry& entry) {
  if (!ClaimOnce(timezone_location_, entry, "timezone")) return;
  std::optional<std::string> name = ReadString(entry, "timezone");
  if (!name.has_value()) return;
  // LoadTimeZone reads the file the name leads to under the zoneinfo
  // directory, or the absolute path it is; only the characters of IANA names
  // (no '.', no leading '/') keep it from opening e.g. /dev/stdin, which
  // blocks.
  const bool iana_like = !name->empty() &&
                         name->size() <= kMaxTimeZoneNameLength &&
                         name->front() != '/' &&
                         std::all_of(name->begin(), name->end(), [](char c) {
                           return absl::ascii_isalnum(c) || c == '/' ||
                                  c == '_' || c == '-' || c == '+';
                         });
  absl::TimeZone zone;
  if (!iana_like || !absl::LoadTimeZone(*name, &zone)) {
    Error(WhereValue(entry), "timezone",
          absl::StrCat("expected an IANA time zone name such as "
                       "\"America/New_York\" or \"UTC\", got ",
                       Quote(*name)));
    return;
  }
  rules_.timezone = zone;
  rules_.timezone_name = *name;
}

void PolicyCompiler::CompilePricingAsOf(const Entry& entry) {
  std::optional<std::string> text = ReadString(entry, "pricing_as_of");
  if (!text.has_value()) return;
  absl::CivilDay day;
  // ParseCivilTime also accepts e.g. "2025-6-1"; insist on the canonical
  // form by formatting the result back.
  if (!absl::ParseCivilTime(*text, &day) ||
      absl::FormatCivilTime(day) != *text) {
    Error(WhereValue(entry), "pricing_as_of",
          absl::StrCat("expected a date written YYYY-MM-DD, e.g. "
                       "\"2025-06-01\", got ",
                       Quote(*text)));
  }
}

void PolicyCompiler::CompilePricing(const Entry& entry) {
  auto models = ReadMapping(
      entry.value, WhereValue(entry), "pricing",
      "a mapping of model name to prices, e.g. gpt-4.1: { input: \"2.00\", "
      "output: \"8.00\" }");
  if (!models.has_value()) return;
  for (const Entry& model : *models) CompileModelPrice(model);
}

void PolicyCompiler::CompileModelPrice(const Entry& model) {
  ++models_seen_;
  const std::string field = JoinField("pricing", model.key);
  const Location where = Where(model.key_node);
  bool ok = true;

  const bool printable_name =
      !model.key.empty() && model.key.size() <= kMaxModelNameLength &&
      std::all_of(model.key.begin(), model.key.end(),
                  [](char c) { return absl::ascii_isgraph(c); });
  if (!printable_name) {
    Error(where, field,
          absl::StrCat("expected a model name of 1 to ", kMaxModelNameLength,
                       " printable characters without spaces, got ",
                       Quote(model.key)));
    ok = false;
  }

  auto [seen, first_time] = models_.try_emplace(model.key);
  if (first_time) {
    seen->second.location = where;
  } else {
    Error(where, field,
          absl::StrCat("model ", Quote(model.key), " is already priced at ",
                       FormatLocation(seen->second.location),
                       "; price each model once"));
    ok = false;
  }

  auto fields = ReadFields(
      model.value, WhereValue(model), field, kPriceFields,
      "a mapping with input, output and optional cached_input and provider");
  if (!fields.has_value()) return;
  // ReadFields has reported a missing required price.
  if (!fields->contains("input") || !fields->contains("output")) ok = false;

  ModelPrice price;
  auto read_price = [&](absl::string_view key, int64_t& nanos) -> bool {
    auto it = fields->find(key);
    if (it == fields->end()) return false;
    std::optional<int64_t> value =
        ReadUsdPerMillionTokens(it->second, JoinField(field, key));
    if (!value.has_value()) {
      ok = false;
      return false;
    }
    nanos = *value;
    return true;
  };
  const bool has_input = read_price("input", price.input_nanos_per_mtok);
  read_price("output", price.output_nanos_per_mtok);
  if (!read_price("cached_input", price.cached_input_nanos_per_mtok)) {
    price.cached_input_nanos_per_mtok = price.input_nanos_per_mtok;
  } else if (has_input &&
             price.cached_input_nanos_per_mtok > price.input_nanos_per_mtok) {
    const Entry& cached = fields->at("cached_input");
    Warning(WhereValue(cached), JoinField(field, "cached_input"),
            absl::StrCat("cached input (",
                         FormatUsdNanos(price.cached_input_nanos_per_mtok),
                         " USD per 1M tokens) costs more than input (",
                         FormatUsdNanos(price.input_nanos_per_mtok),
                         "); providers discount cached input, so check the "
                         "price"));
  }
  if (auto it = fields->find("provider"); it != fields->end()) {
    std::optional<std::string> provider =
        ReadString(it->second, JoinField(field, "provider"));
    if (!provider.has_value()) {
      ok = false;
    } else if (provider->empty()) {
      Error(WhereValue(it->second), JoinField(field, "provider"),
            "expected a provider name such as \"openai\", got \"\"");
      ok = false;
    } else {
      price.provider = *std::move(provider);
    }
  }
  if (ok && first_time) seen->second.price = std::move(price);
}

void PolicyCompiler::CompileDefaults(const Entry& entry) {
  if (!ClaimOnce(defaults_location_, entry, "defaults")) return;
  auto fields =
      ReadFields(entry.value, WhereValue(entry), "defaults", kDefaultsFields,
                 "a mapping with max_output_tokens and unknown_model, e.g. "
                 "{ max_output_tokens: 4096, unknown_model: reject }");
  if (!fields.has_value()) return;
  if (auto it = fields->find("max_output_tokens"); it != fields->end()) {
    std::optional<int64_t> tokens =
        ReadCount(it->second, "defaults.max_output_tokens", 1,
                  kMaxTokensPerCall, "tokens");
    if (tokens.has_value()) defaults_.max_output_tokens = *tokens;
  }
  if (auto it = fields->find("unknown_model"); it != fields->end()) {
    std::optional<std::string> action =
        ReadString(it->second, "defaults.unknown_model");
    if (!action.has_value()) return;
    if (*action == "reject") {
      defaults_.unknown_model = UnknownModelAction::kReject;
    } else if (*action == "deny") {
      defaults_.unknown_model = UnknownModelAction::kDeny;
    } else {
      Error(WhereValue(it->second), "defaults.unknown_model",
            absl::StrCat("expected reject or deny, got ", Quote(*action)));
    }
  }
}

void PolicyCompiler::CompileRoutes(const Entry& entry) {
  auto items = ReadList(entry, "routes",
                        "a list of routes, each { name, when, route_to }");
  if (!items.has_value()) return;
  for (const auto& [field, node] : *items) {
    auto fields = ReadFields(node, Where(node), field, kRouteFields,
                             "a route { name, when, route_to }");
    if (!fields.has_value() || !fields->contains("name") ||
        !fields->contains("when") || !fields->contains("route_to")) {
      continue;
    }
    Route route;
    auto name = ReadRuleName(fields->at("name"), JoinField(field, "name"));
    auto when = ReadCondition(fields->at("when"), JoinField(field, "when"),
                              VariableScope{});
    auto to =
        ReadModelRef(fields->at("route_to"), JoinField(field, "route_to"));
    if (!name || !when || !to) continue;
    route.name = *std::move(name);
    route.when = *std::move(when);
    route.route_to = *std::move(to);
    rules_.routes.push_back(std::move(route));
  }
}

void PolicyCompiler::CompileSpendSlos(const Entry& entry) {
  auto items =
      ReadList(entry, "spend_slos",
               "a list of spend SLOs, each { name, budget, when, then }");
  if (!items.has_value()) return;
  for (const auto& [field, node] : *items) {
    auto fields = ReadFields(node, Where(node), field, kSloFields,
                             "a spend SLO { name, budget, when, then }");
    if (!fields.has_value()) continue;
    SpendSlo slo;
    bool ok = fields->contains("name") && fields->contains("budget") &&
              fields->contains("when") && fields->contains("then");
    if (!ok) continue;
    auto name = ReadRuleName(fields->at("name"), JoinField(field, "name"));
    auto budget = ReadName(fields->at("budget"), JoinField(field, "budget"));
    auto when = ReadCondition(fields->at("when"), JoinField(field, "when"),
                              VariableScope{.has_own_budget = true});
    ok = name && budget && when;
    const std::string then_field = JoinField(field, "then");
    const Entry& then = fields->at("then");
    auto actions =
        ReadFields(then.value, WhereValue(then), then_field, kSloActionFields,
                   "{ downgrade: { model: cheaper-model }, cap_output_tokens: "
                   "N }");
    if (!actions.has_value()) continue;
    if (actions->empty()) {
      Error(WhereValue(then), then_field,
            "expected at least one action: downgrade or cap_output_tokens");
      ok = false;
    }
    if (auto it = actions->find("downgrade"); it != actions->end()) {
      auto map = ReadModelMap(it->second, JoinField(then_field, "downgrade"));
      if (map)
        slo.downgrade = *std::move(map);
      else
        ok = false;
    }
    if (auto it = actions->find("cap_output_tokens"); it != actions->end()) {
      auto cap =
          ReadCount(it->second, JoinField(then_field, "cap_output_tokens"), 1,
                    kMaxTokensPerCall, "tokens");
      if (cap)
        slo.cap_output_tokens = *cap;
      else
        ok = false;
    }
    if (auto it = fields->find("escalate_after"); it != fields->end()) {
      auto periods = ReadCount(it->second, JoinField(field, "escalate_after"),
                               1, 366, "consecutive periods");
      if (periods)
        slo.escalate_after = static_cast<int>(*periods);
      else
        ok = false;
    }
    if (!ok) continue;
    slo.name = *std::move(name);
    slo.budget = *std::move(budget);
    slo.when = *std::move(when);
    rules_.spend_slos.push_back(std::move(slo));
  }
}

std::optional<ExhaustedStep> PolicyCompiler::CompileExhaustedStep(
    const YAML::Node& node, const std::string& field) {
  constexpr absl::string_view kExpected =
      "deny, cap_to_fit, { downgrade: { model: cheaper-model } }, "
      "{ cap_to_fit: { min_output_tokens: N } } or { deny: { message: ... } }";
  ExhaustedStep step;
  if (node.IsScalar()) {
    if (node.Scalar() == "deny") return step;
    if (node.Scalar() == "cap_to_fit") {
      step.kind = ExhaustedStep::Kind::kCapToFit;
      return step;
    }
    Error(Where(node), field,
          absl::StrCat("expected ", kExpected, ", got ", Describe(node)));
    return std::nullopt;
  }
  auto entries = ReadMapping(node, Where(node), field, kExpected);
  if (!entries.has_value()) return std::nullopt;
  if (entries->size() != 1) {
    Error(Where(node), field,
          absl::StrCat("expected one action per step (", kExpected, "), got ",
                       entries->size()));
    return std::nullopt;
  }
  const Entry& action = entries->front();
  const std::string action_field = JoinField(field, action.key);
  if (action.key == "downgrade") {
    auto map = ReadModelMap(action, action_field);
    if (!map) return std::nullopt;
    step.kind = ExhaustedStep::Kind::kDowngrade;
    step.downgrade = *std::move(map);
    return step;
  }
  if (action.key == "cap_to_fit") {
    step.kind = ExhaustedStep::Kind::kCapToFit;
    auto fields = ReadFields(action.value, WhereValue(action), action_field,
                             kCapToFitFields, "{ min_output_tokens: N }");
    if (!fields) return std::nullopt;
    if (auto it = fields->find("min_output_tokens"); it != fields->end()) {
      auto min =
          ReadCount(it->second, JoinField(action_field, "min_output_tokens"), 1,
                    kMaxTokensPerCall, "tokens");
      if (!min) return std::nullopt;
      step.min_output_tokens = *min;
    }
    return step;
  }
  if (action.key == "deny") {
    auto fields = ReadFields(action.value, WhereValue(action), action_field,
                             kDenyStepFields, "{ message: \"...\" }");
    if (!fields) return std::nullopt;
    if (auto it = fields->find("message"); it != fields->end()) {
      auto message = ReadString(it->second, JoinField(action_field, "message"));
      if (!message) return std::nullopt;
      step.message = *std::move(message);
    }
    return step;
  }
  Error(Where(action.key_node), action_field,
        absl::StrCat("unknown action ", Quote(action.key), "; expected ",
                     kExpected));
  return std::nullopt;
}

void PolicyCompiler::CompileOnExhausted(const Entry& entry) {
  if (!ClaimOnce(on_exhausted_location_, entry, "on_exhausted")) return;
  auto items = ReadList(entry, "on_exhausted",
                        "a list of steps tried in order when a budget cannot "
                        "fit the call, e.g. [ { downgrade: { gpt-4.1: "
                        "gpt-4.1-mini } }, cap_to_fit, deny ]");
  if (!items.has_value()) return;
  for (size_t i = 0; i < items->size(); ++i) {
    const auto& [field, node] = (*items)[i];
    std::optional<ExhaustedStep> step = CompileExhaustedStep(node, field);
    if (!step.has_value()) continue;
    if (step->kind == ExhaustedStep::Kind::kDeny && i + 1 < items->size()) {
      Warning(Where(node), field,
              "deny ends the chain; the steps after it are never tried");
    }
    rules_.on_exhausted.push_back(*std::move(step));
  }
}

void PolicyCompiler::CompileDeny(const Entry& entry) {
  auto items = ReadList(entry, "deny",
                        "a list of deny rules, each { name, when, message }");
  if (!items.has_value()) return;
  for (const auto& [field, node] : *items) {
    auto fields = ReadFields(node, Where(node), field, kDenyFields,
                             "a deny rule { name, when, message }");
    if (!fields.has_value() || !fields->contains("name") ||
        !fields->contains("when")) {
      continue;
    }
    DenyRule rule;
    auto name = ReadRuleName(fields->at("name"), JoinField(field, "name"));
    auto when = ReadCondition(fields->at("when"), JoinField(field, "when"),
                              VariableScope{});
    if (!name || !when) continue;
    if (auto it = fields->find("message"); it != fields->end()) {
      auto message = ReadString(it->second, JoinField(field, "message"));
      if (!message) continue;
      rule.message = *std::move(message);
    }
    rule.name = *std::move(name);
    rule.when = *std::move(when);
    rules_.deny.push_back(std::move(rule));
  }
}

void PolicyCompiler::CompileRateLimits(const Entry& entry) {
  auto items = ReadList(entry, "rate_limits",
                        "a list of rate limits, each { name, key, "
                        "requests_per_minute, tokens_per_minute, ... }");
  if (!items.has_value()) return;
  for (const auto& [field, node] : *items) {
    auto fields = ReadFields(node, Where(node), field, kRateLimitFields,
                             "a rate limit { name, key, requests_per_minute, "
                             "tokens_per_minute, ... }");
    if (!fields.has_value() || !fields->contains("name")) continue;
    RateLimitRule rule;
    bool ok = true;
    auto name = ReadRuleName(fields->at("name"), JoinField(field, "name"));
    ok = name.has_value();
    if (auto it = fields->find("when"); it != fields->end()) {
      auto when =
          ReadCondition(it->second, JoinField(field, "when"), VariableScope{});
      if (when)
        rule.when = *std::move(when);
      else
        ok = false;
    }
    if (auto it = fields->find("key"); it != fields->end()) {
      auto key = ReadCondition(it->second, JoinField(field, "key"),
                               VariableScope{}, expr::Type::kString);
      if (key)
        rule.key = *std::move(key);
      else
        ok = false;
    }
    struct Window {
      absl::string_view suffix;
      absl::Duration length;
    };
    constexpr Window kWindows[] = {{"second", absl::Seconds(1)},
                                   {"minute", absl::Minutes(1)},
                                   {"hour", absl::Hours(1)},
                                   {"day", absl::Hours(24)}};
    int given = 0;
    for (const Window& window : kWindows) {
      limits::WindowLimit limit{window.length, 0, 0};
      for (absl::string_view unit : {"requests", "tokens"}) {
        const std::string name = absl::StrCat(unit, "_per_", window.suffix);
        auto it = fields->find(name);
        if (it == fields->end()) continue;
        ++given;
        auto value =
            ReadCount(it->second, JoinField(field, name), 1, kMaxRate, unit);
        if (!value) {
          ok = false;
        } else if (unit == "requests") {
          limit.max_requests = *value;
        } else {
          limit.max_tokens = *value;
        }
      }
      if (limit.max_requests > 0 || limit.max_tokens > 0) {
        rule.windows.push_back(limit);
      }
    }
    if (given == 0) {
      Error(Where(node), field,
            "expected at least one limit, e.g. requests_per_minute: 120 or "
            "tokens_per_minute: 50000");
      ok = false;
    }
    if (!ok) continue;
    rule.name = *std::move(name);
    rules_.rate_limits.push_back(std::move(rule));
  }
}

void PolicyCompiler::CompileConcurrency(const Entry& entry) {
  auto items = ReadList(entry, "concurrency",
                        "a list of pools, each { name, when, max_in_flight, "
                        "reserve }");
  if (!items.has_value()) return;
  for (const auto& [field, node] : *items) {
    auto fields = ReadFields(node, Where(node), field, kConcurrencyFields,
                             "a pool { name, when, max_in_flight, reserve }");
    if (!fields.has_value() || !fields->contains("name") ||
        !fields->contains("max_in_flight")) {
      continue;
    }
    ConcurrencyPool pool;
    bool ok = true;
    auto name = ReadRuleName(fields->at("name"), JoinField(field, "name"));
    auto max =
        ReadCount(fields->at("max_in_flight"),
                  JoinField(field, "max_in_flight"), 1, kMaxSlots, "slots");
    ok = name && max;
    if (auto it = fields->find("when"); it != fields->end()) {
      auto when =
          ReadCondition(it->second, JoinField(field, "when"), VariableScope{});
      if (when)
        pool.when = *std::move(when);
      else
        ok = false;
    }
    if (auto it = fields->find("reserve"); it != fields->end()) {
      const std::string reserve_field = JoinField(field, "reserve");
      auto classes =
          ReadMapping(it->second.value, WhereValue(it->second), reserve_field,
                      "a mapping of priority class to reserved "
                      "slots, e.g. { critical: 60 }");
      if (!classes) {
        ok = false;
      } else {
        int64_t total = 0;
        for (const Entry& cls : *classes) {
          auto slots = ReadCount(cls, JoinField(reserve_field, cls.key), 1,
                                 kMaxSlots, "slots");
          if (!slots) {
            ok = false;
            continue;
          }
          total += *slots;
          pool.reserve[cls.key] = *slots;
        }
        if (max && total > *max) {
          Error(WhereValue(it->second), reserve_field,
                absl::StrCat("reserves ", total, " slots but max_in_flight is ",
                             *max, "; reserve at most max_in_flight"));
          ok = false;
        }
      }
    }
    if (!ok) continue;
    pool.name = *std::move(name);
    pool.max_in_flight = *max;
    rules_.concurrency.push_back(std::move(pool));
  }
}

void PolicyCompiler::CompileAttribution(const Entry& entry) {
  if (!ClaimOnce(attribution_location_, entry, "attribution")) return;
  auto fields = ReadFields(entry.value, WhereValue(entry), "attribution",
                           kAttributionFields,
                           "a mapping { dimensions: [team, feature], "
                           "max_values_per_dimension: 1000 }");
  if (!fields.has_value()) return;
  Attribution attribution;
  bool ok = true;
  if (auto it = fields->find("max_values_per_dimension"); it != fields->end()) {
    auto max = ReadCount(it->second, "attribution.max_values_per_dimension", 1,
                         kMaxValuesPerDimension, "values");
    if (max)
      attribution.max_values_per_dimension = *max;
    else
      ok = false;
  }
  if (auto it = fields->find("dimensions"); it != fields->end()) {
    auto items = ReadList(it->second, "attribution.dimensions",
                          "a list of label keys, e.g. [team, feature, user]");
    if (!items) {
      ok = false;
    } else if (static_cast<int64_t>(items->size()) >
               kMaxAttributionDimensions) {
      Error(WhereValue(it->second), "attribution.dimensions",
            absl::StrCat(items->size(), " dimensions; at most ",
                         kMaxAttributionDimensions));
      ok = false;
    } else {
      for (const auto& [field, node] : *items) {
        std::optional<std::string> key =
            ReadString(Entry{field, node, node}, field);
        if (!key) {
          ok = false;
          continue;
        }
        if (key->empty() || key->size() > 64 ||
            key->find('\0') != std::string::npos) {
          Error(Where(node), field,
                absl::StrCat("expected a label key of 1 to 64 bytes, got ",
                             Quote(*key)));
          ok = false;
        } else if (*key == "model" || *key == "provider" || *key == "budget" ||
                   *key == "instance") {
          Error(Where(node), field,
                absl::StrCat(Quote(*key),
                             " is always a dimension of usage; list label "
                             "keys only"));
          ok = false;
        } else if (std::find(attribution.dimensions.begin(),
                             attribution.dimensions.end(),
                             *key) != attribution.dimensions.end()) {
          Error(Where(node), field,
                absl::StrCat(Quote(*key), " is listed twice"));
          ok = false;
        } else {
          attribution.dimensions.push_back(*std::move(key));
        }
      }
    }
  }
  if (!ok) return;
  std::sort(attribution.dimensions.begin(), attribution.dimensions.end());
  rules_.attribution = std::move(attribution);
}

void PolicyCompiler::CompileAlerts(const Entry& entry) {
  auto items = ReadList(entry, "alerts",
                        "a list of alerts, each { name, when, severity }");
  if (!items.has_value()) return;
  for (const auto& [field, node] : *items) {
    auto fields = ReadFields(node, Where(node), field, kAlertFields,
                             "an alert { name, when, severity, budget }");
    if (!fields.has_value() || !fields->contains("name") ||
        !fields->contains("when")) {
      continue;
    }
    AlertRule rule;
    bool ok = true;
    auto name = ReadRuleName(fields->at("name"), JoinField(field, "name"));
    // Without `budget:`, an alert watches every budget in turn.
    auto when = ReadCondition(fields->at("when"), JoinField(field, "when"),
                              VariableScope{.has_own_budget = true});
    ok = name && when;
    rule.severity = "warning";
    if (auto it = fields->find("severity"); it != fields->end()) {
      auto severity = ReadString(it->second, JoinField(field, "severity"));
      if (severity && (*severity == "info" || *severity == "warning" ||
                       *severity == "critical")) {
        rule.severity = *severity;
      } else {
        if (severity) {
          Error(WhereValue(it->second), JoinField(field, "severity"),
                absl::StrCat("expected info, warning or critical, got ",
                             Quote(*severity)));
        }
        ok = false;
      }
    }
    if (auto it = fields->find("budget"); it != fields->end()) {
      auto budget = ReadName(it->second, JoinField(field, "budget"));
      if (budget)
        rule.budget = *budget;
      else
        ok = false;
    }
    if (!ok) continue;
    rule.name = *std::move(name);
    rule.when = *std::move(when);
    rules_.alerts.push_back(std::move(rule));
  }
}

// The built-in alerts of the `alerting` section: each may be `false`, `true`
// or a mapping of `enabled`, `severity` and the fields it has.
struct BuiltinAlertSpec {
  absl::string_view key;
  BuiltinAlert AlertingSettings::*member;
  absl::string_view ratio_key;  // empty: no ratio
  double max_ratio;
  bool min_requests;
  bool min_spend;
};

constexpr BuiltinAlertSpec kBuiltinAlerts[] = {
    {"budget_thresholds", &AlertingSettings::budget_thresholds, "", 0, false,
     false},
    {"spend_slo_breach", &AlertingSettings::spend_slo_breach, "", 0, false,
     false},
    {"spend_hour_over_hour", &AlertingSettings::spend_hour_over_hour,
     "increase", 100, false, true},
    {"cost_per_request_24h", &AlertingSettings::cost_per_request_24h,
     "increase", 100, true, false},
    {"tokens_per_request_24h", &AlertingSettings::tokens_per_request_24h,
     "increase", 100, true, false},
    {"daily_burn_variation", &AlertingSettings::daily_burn_variation,
     "variation", 100, false, true},
    {"projected_exhaustion", &AlertingSettings::projected_exhaustion,
     "min_elapsed", 1, false, false},
    {"retry_rate", &AlertingSettings::retry_rate, "max", 1, true, false},
};

void PolicyCompiler::CompileAlerting(const Entry& entry) {
  if (!ClaimOnce(alerting_location_, entry, "alerting")) return;
  auto entries = ReadMapping(entry.value, WhereValue(entry), "alerting",
                             "a mapping of built-in alerts, e.g. "
                             "{ spend_hour_over_hour: { increase: 30% }, "
                             "retry_rate: false }");
  if (!entries.has_value()) return;
  AlertingSettings settings;
  for (const Entry& item : *entries) {
    const BuiltinAlertSpec* spec = nullptr;
    for (const BuiltinAlertSpec& candidate : kBuiltinAlerts) {
      if (candidate.key == item.key) spec = &candidate;
    }
    const std::string field = JoinField("alerting", item.key);
    if (spec == nullptr) {
      Error(
          Where(item.key_node), field,
          absl::StrCat(
              "unknown built-in alert ", Quote(item.key), "; expected one of: ",
              absl::StrJoin(kBuiltinAlerts, ", ",
                            [](std::string* out, const BuiltinAlertSpec& s) {
                              absl::StrAppend(out, s.key);
                            })));
      continue;
    }
    BuiltinAlert& alert = settings.*(spec->member);
    if (item.value.IsScalar()) {
      const std::string& text = item.value.Scalar();
      if (!IsQuoted(item.value) && (text == "true" || text == "false")) {
        alert.enabled = text == "true";
        continue;
      }
    }
    std::vector<FieldSpec> fields = {{"enabled", false}, {"severity", false}};
    if (!spec->ratio_key.empty()) fields.push_back({spec->ratio_key, false});
    if (spec->min_requests) fields.push_back({"min_requests", false});
    if (spec->min_spend) fields.push_back({"min_spend", false});
    if (spec->member == &AlertingSettings::spend_slo_breach) {
      fields.push_back({"escalation_severity", false});
    }
    auto values = ReadMapping(
        item.value, WhereValue(item), field,
        absl::StrCat("true, false or a mapping of ",
                     absl::StrJoin(fields, ", ",
                                   [](std::string* out, const FieldSpec& f) {
                                     absl::StrAppend(out, f.key);
                                   })));
    if (!values.has_value()) continue;
    for (const Entry& value : *values) {
      const std::string value_field = JoinField(field, value.key);
      if (value.key == "enabled") {
        const std::string text =
            value.value.IsScalar() ? value.value.Scalar() : "";
        if (value.value.IsScalar() && !IsQuoted(value.value) &&
            (text == "true" || text == "false")) {
          alert.enabled = text == "true";
        } else {
          Error(WhereValue(value), value_field,
                absl::StrCat("expected true or false, got ",
                             Describe(value.value)));
        }
      } else if (value.key == "severity") {
        if (auto severity = ReadSeverity(value, value_field)) {
          alert.severity = *severity;
        }
      } else if (value.key == "escalation_severity") {
        if (auto severity = ReadSeverity(value, value_field)) {
          settings.slo_escalation_severity = *severity;
        }
      } else if (!spec->ratio_key.empty() && value.key == spec->ratio_key) {
        if (auto ratio = ReadRatio(value, value_field, spec->max_ratio)) {
          alert.ratio = *ratio;
        }
      } else if (spec->min_requests && value.key == "min_requests") {
        if (auto count =
                ReadCount(value, value_field, 0, 1'000'000'000, "requests")) {
          alert.min_requests = *count;
        }
      } else if (spec->min_spend && value.key == "min_spend") {
        absl::StatusOr<int64_t> nanos =
            value.value.IsScalar()
                ? ParseUsdNanos(value.value.Scalar())
                : absl::InvalidArgumentError(Describe(value.value));
        if (nanos.ok() && *nanos >= 0) {
          alert.min_spend_nanos = *nanos;
        } else {
          Error(
              WhereValue(value), value_field,
              absl::StrCat("expected USD as a decimal string such as "
                           "\"1.00\", got ",
                           nanos.ok() ? Quote(value.value.Scalar())
                                      : std::string(nanos.status().message())));
        }
      } else {
        Error(Where(value.key_node), value_field,
              absl::StrCat(
                  "unknown field ", Quote(value.key), "; expected one of: ",
                  absl::StrJoin(fields, ", ",
                                [](std::string* out, const FieldSpec& f) {
                                  absl::StrAppend(out, f.key);
                                })));
      }
    }
  }
  rules_.alerting = std::move(settings);
}

std::optional<double> PolicyCompiler::ReadRatio(const Entry& entry,
                                                absl::string_view field,
                                                double max) {
  const std::string expected = absl::StrCat(
      "expected a percentage such as 30% or a fraction such as "
      "0.3, above 0 and at most ",
      max * 100, "%, got ");
  if (!entry.value.IsScalar()) {
    Error(WhereValue(entry), field,
          absl::StrCat(expected, Describe(entry.value)));
    return std::nullopt;
  }
  absl::string_view text = entry.value.Scalar();
  const bool percent = absl::ConsumeSuffix(&text, "%");
  double value = 0;
  if (!absl::SimpleAtod(text, &value) || !(value > 0)) {
    Error(WhereValue(entry), field,
          absl::StrCat(expected, Quote(entry.value.Scalar())));
    return std::nullopt;
  }
  if (percent) value /= 100;
  if (value > max) {
    Error(WhereValue(entry), field,
          absl::StrCat(expected, Quote(entry.value.Scalar())));
    return std::nullopt;
  }
  return value;
}

std::optional<std::string> PolicyCompiler::ReadSeverity(
    const Entry& entry, absl::string_view field) {
  auto severity = ReadString(entry, field);
  if (!severity.has_value()) return std::nullopt;
  if (*severity == "info" || *severity == "warning" ||
      *severity == "critical") {
    return severity;
  }
  Error(WhereValue(entry), field,
        absl::StrCat("expected info, warning or critical, got ",
                     Quote(*severity)));
  return std::nullopt;
}

std::optional<std::vector<std::pair<std::string, YAML::Node>>>
PolicyCompiler::ReadList(const Entry& entry, absl::string_view field,
                         absl::string_view expected) {
  if (!entry.value.IsSequence()) {
    Error(WhereValue(entry), field,
          absl::StrCat("expected ", expected, ", got ", Describe(entry.value)));
    return std::nullopt;
  }
  std::vector<std::pair<std::string, YAML::Node>> items;
  for (size_t i = 0; i < entry.value.size(); ++i) {
    items.emplace_back(absl::StrCat(field, "[", i, "]"), entry.value[i]);
  }
  return items;
}

std::optional<std::string> PolicyCompiler::ReadName(const Entry& entry,
                                                    absl::string_view field) {
  std::optional<std::string> name = ReadString(entry, field);
  if (!name.has_value()) return std::nullopt;
  const bool valid =
      !name->empty() && name->size() <= 128 &&
      std::all_of(name->begin(), name->end(), [](char c) {
        return absl::ascii_isalnum(c) || c == '-' || c == '_' || c == '.';
      });
  if (!valid) {
    Error(WhereValue(entry), field,
          absl::StrCat("expected a name of 1 to 128 letters, digits, '-', "
                       "'_' or '.', got ",
                       Quote(*name)));
    return std::nullopt;
  }
  return name;
}

std::optional<std::string> PolicyCompiler::ReadRuleName(
    const Entry& entry, absl::string_view field) {
  std::optional<std::string> name = ReadName(entry, field);
  if (!name.has_value()) return std::nullopt;
  auto [first, inserted] = rule_names_.try_emplace(*name, WhereValue(entry));
  if (!inserted) {
    Error(WhereValue(entry), field,
          absl::StrCat("rule name ", Quote(*name), " is already used at ",
                       FormatLocation(first->second),
                       "; every rule needs its own name so that answers can "
                       "say which one fired"));
    return std::nullopt;
  }
  return name;
}

std::optional<Condition> PolicyCompiler::ReadCondition(const Entry& entry,
                                                       absl::string_view field,
                                                       VariableScope scope,
                                                       expr::Type type) {
  if (!entry.value.IsScalar()) {
    Error(WhereValue(entry), field,
          absl::StrCat("expected an expression such as "
                       "budget.used_ratio >= 90%, got ",
                       Describe(entry.value)));
    return std::nullopt;
  }
  Condition condition;
  condition.source = entry.value.Scalar();
  const PolicySchema schema(scope, &rules_.slots);
  expr::CompileResult compiled = expr::Compile(condition.source, schema, type);
  if (!compiled.errors.empty()) {
    const Location start = WhereValue(entry);
    const bool one_line = condition.source.find('\n') == std::string::npos;
    for (const expr::CompileError& error : compiled.errors) {
      Location where = start;
      // Plain and quoted one-line scalars map offsets to columns exactly.
      if (one_line && where.column > 0) {
        where.column += error.offset + (IsQuoted(entry.value) ? 1 : 0);
      }
      Error(where, field,
            absl::StrCat(error.message, " in ", Quote(condition.source)));
    }
    return std::nullopt;
  }
  condition.program = std::move(compiled.program);
  return condition;
}

std::optional<std::string> PolicyCompiler::ReadModelRef(
    const Entry& entry, absl::string_view field) {
  std::optional<std::string> model = ReadString(entry, field);
  if (!model.has_value()) return std::nullopt;
  model_refs_.emplace_back(*model, WhereValue(entry), std::string(field));
  return model;
}

std::optional<ModelMap> PolicyCompiler::ReadModelMap(const Entry& entry,
                                                     absl::string_view field) {
  auto entries = ReadMapping(entry.value, WhereValue(entry), field,
                             "a mapping of model to cheaper model, e.g. "
                             "{ gpt-4.1: gpt-4.1-mini }");
  if (!entries.has_value()) return std::nullopt;
  ModelMap map;
  bool ok = true;
  for (const Entry& pair : *entries) {
    const std::string pair_field = JoinField(field, pair.key);
    model_refs_.emplace_back(pair.key, Where(pair.key_node), pair_field);
    std::optional<std::string> to = ReadModelRef(pair, pair_field);
    if (!to.has_value()) {
      ok = false;
      continue;
    }
    if (*to == pair.key) {
      Error(WhereValue(pair), pair_field,
            absl::StrCat("maps ", Quote(pair.key), " to itself"));
      ok = false;
      continue;
    }
    map[pair.key] = *std::move(to);
  }
  if (!ok) return std::nullopt;
  return map;
}

std::optional<int64_t> PolicyCompiler::ReadCount(const Entry& entry,
                                                 absl::string_view field,
                                                 int64_t min, int64_t max,
                                                 absl::string_view unit) {
  const std::string expected =
      absl::StrCat("expected a whole number of ", unit, " from ", min, " to ",
                   max, ", got ");
  if (!entry.value.IsScalar()) {
    Error(WhereValue(entry), field,
          absl::StrCat(expected, Describe(entry.value)));
    return std::nullopt;
  }
  const std::string& text = entry.value.Scalar();
  if (IsQuoted(entry.value)) {
    Error(WhereValue(entry), field,
          absl::StrCat(expected, "the quoted string ", Quote(text),
                       "; write the number without quotes"));
    return std::nullopt;
  }
  int64_t value = 0;
  const bool digits_only =
      !text.empty() && std::all_of(text.begin(), text.end(), [](char c) {
        return absl::ascii_isdigit(c);
      });
  if (!digits_only || !absl::SimpleAtoi(text, &value) || value < min ||
      value > max) {
    Error(WhereValue(entry), field, absl::StrCat(expected, Quote(text)));
    return std::nullopt;
  }
  return value;
}

bool PolicyCompiler::ClaimOnce(std::optional<Location>& first,
                               const Entry& entry, absl::string_view field) {
  if (!first.has_value()) {
    first = Where(entry.key_node);
    return true;
  }
  Error(Where(entry.key_node), field,
        absl::StrCat(field, " is already set at ", FormatLocation(*first),
                     "; set it once across all policy files"));
  return false;
}

std::optional<std::string> PolicyCompiler::ReadString(const Entry& entry,
                                                      absl::string_view field) {
  if (!entry.value.IsScalar()) {
    Error(WhereValue(entry), field,
          absl::StrCat("expected a string, got ", Describe(entry.value)));
    return std::nullopt;
  }
  return entry.value.Scalar();
}

std::optional<int64_t> PolicyCompiler::ReadUsdPerMillionTokens(
    const Entry& entry, absl::string_view field) {
  if (!entry.value.IsScalar()) {
    Error(WhereValue(entry), field,
          absl::StrCat("expected USD per 1M tokens as a decimal string such "
                       "as \"2.00\", got ",
                       Describe(entry.value)));
    return std::nullopt;
  }
  // Scalar() is the source text, so an unquoted 2.00 is read exactly too.
  absl::StatusOr<int64_t> nanos = ParseUsdNanos(entry.value.Scalar());
  if (!nanos.ok()) {
    Error(
        WhereValue(entry), field,
        absl::StrCat("expected USD per 1M tokens: ", nanos.status().message()));
    return std::nullopt;
  }
  return *nanos;
}

std::optional<std::vector<Entry>> PolicyCompiler::ReadMapping(
    const YAML::Node& node, const Location& where, absl::string_view field,
    absl::string_view expected) {
  if (!node.IsMap()) {
    Error(where, field,
          absl::StrCat("expected ", expected, ", got ", Describe(node)));
    return std::nullopt;
  }
  std::vector<Entry> entries;
  absl::flat_hash_map<std::string, YAML::Node> first_keys;
  for (auto it = node.begin(); it != node.end(); ++it) {
    // A copy: the iterator's operator-> returns a temporary proxy, so a
    // reference to its `first` would dangle after this statement.
    const YAML::Node key = it->first;
    if (!key.IsScalar()) {
      Error(Where(key), field,
            absl::StrCat("expected a string key, got ", Describe(key)));
      continue;
    }
    auto [first, inserted] = first_keys.try_emplace(key.Scalar(), key);
    if (!inserted) {
      // yaml-cpp keeps both entries of a duplicated key; YAML forbids it.
      Error(Where(key), JoinField(field, key.Scalar()),
            absl::StrCat("duplicate key ", Quote(key.Scalar()),
                         "; it is first written at ",
                         FormatLocation(Where(first->second))));
      continue;
    }
    entries.push_back(Entry{key.Scalar(), key, it->second});
  }
  return entries;
}

template <typename Spec, size_t N>
std::optional<absl::flat_hash_map<std::string, Entry>>
PolicyCompiler::ReadFields(const YAML::Node& node, const Location& where,
                           absl::string_view field, const Spec (&specs)[N],
                           absl::string_view expected) {
  std::optional<std::vector<Entry>> entries =
      ReadMapping(node, where, field, expected);
  if (!entries.has_value()) return std::nullopt;
  absl::flat_hash_map<std::string, Entry> fields;
  for (Entry& entry : *entries) {
    const bool known =
        std::any_of(std::begin(specs), std::end(specs),
                    [&](const Spec& spec) { return spec.key == entry.key; });
    if (!known) {
      Error(Where(entry.key_node), JoinField(field, entry.key),
            absl::StrCat("unknown field ", Quote(entry.key),
                         "; expected one of: ",
                         absl::StrJoin(specs, ", ",
                                       [](std::string* out, const Spec& spec) {
                                         absl::StrAppend(out, spec.key);
                                       })));
      continue;
    }
    std::string key = entry.key;
    fields.emplace(std::move(key), std::move(entry));
  }
  for (const Spec& spec : specs) {
    if (spec.required && !fields.contains(spec.key)) {
      Error(where, JoinField(field, spec.key),
            absl::StrCat("missing required field ", Quote(spec.key)));
    }
  }
  return fields;
}

Location PolicyCompiler::Where(const YAML::Node& node) const {
  Location location;
  location.path = file_ == nullptr ? "" : file_->path;
  if (!node.IsDefined()) return location;
  const YAML::Mark mark = node.Mark();
  if (!mark.is_null() && mark.line >= 0 && mark.column >= 0) {
    location.line = mark.line + 1;
    location.column = mark.column + 1;
  }
  return location;
}

Location PolicyCompiler::WhereValue(const Entry& entry) const {
  // yaml-cpp places an empty value (`key:` and nothing) at the next token,
  // often on the next line; the key is the better place to point at.
  if (!entry.value.IsDefined() || entry.value.IsNull()) {
    return Where(entry.key_node);
  }
  return Where(entry.value);
}

void PolicyCompiler::Report(Diagnostic::Severity severity,
                            const Location& where, absl::string_view field,
                            std::string message) {
  Diagnostic diagnostic;
  diagnostic.severity = severity;
  diagnostic.path = where.path;
  diagnostic.line = where.line;
  diagnostic.column = where.column;
  diagnostic.field = std::string(field);
  diagnostic.message = std::move(message);
  diagnostics_.push_back(std::move(diagnostic));
  if (severity == Diagnostic::Severity::kError) has_errors_ = true;
}

CompileResult PolicyCompiler::Finish(std::string version) {
  file_ = nullptr;
  if (models_seen_ == 0 && unreadable_ == 0) {
    Error(Location{}, "pricing",
          "no model is priced; a policy needs a pricing section such as "
          "pricing: { gpt-4.1: { input: \"2.00\", output: \"8.00\" } }");
  }
  for (const auto& [model, where, field] : model_refs_) {
    if (!models_.contains(model)) {
      Error(where, field,
            absl::StrCat("model ", Quote(model),
                         " has no price; rules may name priced models only"));
    }
  }
  CompileResult result;
  result.diagnostics = std::move(diagnostics_);
  if (has_errors_) return result;
  rules_.prices.reserve(models_.size());
  for (auto& [name, model] : models_) {
    // Without errors, every model has a price.
    if (model.price.has_value()) {
      rules_.prices.emplace(name, *std::move(model.price));
    }
  }
  rules_.defaults = defaults_;
  result.policy = std::make_shared<const CompiledPolicy>(std::move(version),
                                                         std::move(rules_));
  return result;
}

}  // namespace

std::string FormatDiagnostic(const Diagnostic& diagnostic) {
  std::string out;
  if (!diagnostic.path.empty()) {
    out = FormatLocation(
        Location{diagnostic.path, diagnostic.line, diagnostic.column});
    out.append(": ");
  }
  if (diagnostic.severity == Diagnostic::Severity::kWarning) {
    out.append("warning: ");
  }
  if (!diagnostic.field.empty()) absl::StrAppend(&out, diagnostic.field, ": ");
  out.append(diagnostic.message);
  return out;
}

CompileResult CompilePolicy(const std::vector<SourceFile>& files) {
  // Sorted by path, so the version and the diagnostics do not depend on the
  // order the caller lists the files in.
  std::vector<const SourceFile*> sorted;
  sorted.reserve(files.size());
  for (const SourceFile& file : files) {
    if (!absl::EndsWith(file.path, kTestFileSuffix)) sorted.push_back(&file);
  }
  std::sort(sorted.begin(), sorted.end(),
            [](const SourceFile* a, const SourceFile* b) {
              return std::tie(a->path, a->content) <
                     std::tie(b->path, b->content);
            });

  PolicyCompiler compiler;
  Fnv1a64 hash;
  constexpr char kSeparator[] = {'\0'};
  const absl::string_view separator(kSeparator, 1);
  const SourceFile* previous = nullptr;
  for (const SourceFile* file : sorted) {
    hash.Add(file->path);
    hash.Add(separator);
    hash.Add(file->content);
    hash.Add(separator);
    if (previous != nullptr && previous->path == file->path) {
      compiler.AddDuplicatePath(file->path);
      continue;  // compiling it again would only repeat its diagnostics
    }
    compiler.AddFile(*file);
    previous = file;
  }
  return compiler.Finish(absl::StrFormat("%016x", hash.hash()));
}

}  // namespace bursar::policy
