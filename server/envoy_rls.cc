#include "server/envoy_rls.h"

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "policy/pricing.h"
#include "server/grpc_services.h"

namespace bursar::server {
namespace {

using envoy::service::ratelimit::v3::RateLimitRequest;
using envoy::service::ratelimit::v3::RateLimitResponse;

enum class TokenKind { kInput, kCachedInput, kOutput };

absl::Status Invalid(absl::string_view field, absl::string_view problem) {
  return absl::InvalidArgumentError(absl::StrCat(field, ": ", problem));
}

// What the descriptors of one request say, merged.
struct Mapped {
  std::string model;
  std::string provider;
  TokenKind kind = TokenKind::kOutput;
  absl::flat_hash_map<std::string, std::string> labels;
  int64_t hits = 1;
};

// Records key=value from descriptor `where`, refusing a second, different
// value for the same key.
absl::Status Put(absl::flat_hash_map<std::string, std::string>& values,
                 const std::string& key, const std::string& value,
                 absl::string_view where) {
  auto [it, inserted] = values.emplace(key, value);
  if (!inserted && it->second != value) {
    return Invalid(
        where, absl::StrFormat("key \"%s\" is \"%s\" here but \"%s\" in an "
                               "earlier descriptor; Bursar decides once per "
                               "request, so a key must mean one thing",
                               absl::CHexEscape(key), absl::CHexEscape(value),
                               absl::CHexEscape(it->second)));
  }
  return absl::OkStatus();
}

absl::StatusOr<Mapped> Map(const RateLimitRequest& request) {
  if (request.domain().empty()) {
    return Invalid("domain",
                   "must name the rate-limit domain (the `domain` of Envoy's "
                   "ratelimit filter)");
  }
  if (request.descriptors_size() == 0) {
    return Invalid("descriptors",
                   "at least one descriptor is required; its entries become "
                   "the labels of the Check");
  }
  Mapped mapped;
  absl::flat_hash_map<std::string, std::string> all;  // every key, checked
  bool hits_set = false;
  for (int d = 0; d < request.descriptors_size(); ++d) {
    const auto& descriptor = request.descriptors(d);
    const std::string where = absl::StrCat("descriptors[", d, "]");
    if (descriptor.entries_size() == 0) {
      return Invalid(where, "has no entries");
    }
    if (descriptor.has_hits_addend()) {
      const uint64_t hits = descriptor.hits_addend().value();
      if (hits_set && static_cast<int64_t>(hits) != mapped.hits) {
        return Invalid(
            absl::StrCat(where, ".hits_addend"),
            absl::StrCat(hits, " differs from ", mapped.hits,
                         " in an earlier descriptor; Bursar charges one "
                         "number of tokens per request"));
      }
      if (hits > static_cast<uint64_t>(policy::kMaxTokensPerCall)) {
        return Invalid(
            absl::StrCat(where, ".hits_addend"),
            absl::StrCat(hits, " tokens; at most ", policy::kMaxTokensPerCall));
      }
      mapped.hits = static_cast<int64_t>(hits);
      hits_set = true;
    }
    for (int e = 0; e < descriptor.entries_size(); ++e) {
      const auto& entry = descriptor.entries(e);
      const std::string at = absl::StrCat(where, ".entries[", e, "]");
      if (entry.key().empty() || entry.value().empty()) {
        return Invalid(at, "key and value must both be non-empty");
      }
      if (entry.key() == kRlsDomainLabel) {
        return Invalid(at,
                       "the key \"domain\" is reserved: the request's domain "
                       "is the label \"domain\"");
      }
      if (absl::Status s = Put(all, entry.key(), entry.value(), at); !s.ok()) {
        return s;
      }
      if (entry.key() == kRlsModelKey) {
        mapped.model = entry.value();
      } else if (entry.key() == kRlsProviderKey) {
        mapped.provider = entry.value();
      } else if (entry.key() == kRlsTokenKindKey) {
        if (entry.value() == "output") {
          mapped.kind = TokenKind::kOutput;
        } else if (entry.value() == "input") {
          mapped.kind = TokenKind::kInput;
        } else if (entry.value() == "cached_input") {
          mapped.kind = TokenKind::kCachedInput;
        } else {
          return Invalid(at, absl::StrFormat("token_kind \"%s\" is not input, "
                                             "cached_input or output",
                                             absl::CHexEscape(entry.value())));
        }
      } else {
        mapped.labels[entry.key()] = entry.value();
      }
    }
  }
  if (mapped.model.empty()) {
    return Invalid("descriptors",
                   "no entry names the model: add an entry with key \"model\" "
                   "(e.g. a request_headers action on the model header)");
  }
  if (!hits_set) {
    const uint32_t hits =
        request.hits_addend() == 0 ? 1 : request.hits_addend();
    if (hits > policy::kMaxTokensPerCall) {
      return Invalid("hits_addend", absl::StrCat(hits, " tokens; at most ",
                                                 policy::kMaxTokensPerCall));
    }
    mapped.hits = hits;
  }
  mapped.labels[kRlsDomainLabel] = request.domain();
  return mapped;
}

v1::CheckRequest MakeCheck(const Mapped& mapped) {
  v1::CheckRequest check;
  check.set_model(mapped.model);
  check.set_provider(mapped.provider);
  for (const auto& [key, value] : mapped.labels) {
    (*check.mutable_labels())[key] = value;
  }
  // max_output_tokens 0 would mean the policy's default: reserve one output
  // token when the hits are input tokens.
  if (mapped.kind == TokenKind::kOutput) {
    check.set_max_output_tokens(mapped.hits == 0 ? 1 : mapped.hits);
  } else {
    check.set_input_tokens(mapped.hits);
    check.set_max_output_tokens(1);
  }
  check.set_dry_run(mapped.hits == 0);
  return check;
}

void AddHeader(RateLimitResponse* response, absl::string_view key,
               absl::string_view value) {
  auto* header = response->add_response_headers_to_add();
  header->set_key(std::string(key));
  header->set_value(std::string(value));
}

// The rules of the answer's reasons, each once, in order.
std::string Rules(const v1::CheckResponse& check) {
  std::vector<std::string> rules;
  for (const v1::Reason& reason : check.reasons()) {
    if (std::find(rules.begin(), rules.end(), reason.rule()) == rules.end()) {
      rules.push_back(reason.rule());
    }
  }
  return absl::StrJoin(rules, ",");
}

void Answer(RateLimitResponse::Code code, const v1::CheckResponse& check,
            int descriptors, RateLimitResponse* response) {
  response->set_overall_code(code);
  for (int i = 0; i < descriptors; ++i) {
    auto* status = response->add_statuses();
    status->set_code(code);
    if (check.has_retry_after()) {
      *status->mutable_duration_until_reset() = check.retry_after();
    }
  }
}

}  // namespace

absl::Status EnvoyRateLimiter::ShouldRateLimit(const RateLimitRequest& request,
                                               RateLimitResponse* response) {
  absl::StatusOr<Mapped> mapped = Map(request);
  if (!mapped.ok()) return mapped.status();
  const v1::CheckRequest check_request = MakeCheck(*mapped);
  v1::CheckResponse check;
  if (absl::Status s = decider_->Check(check_request, &check); !s.ok()) {
    return s;
  }

  std::vector<std::string> deny_messages;
  if (check.verdict() == v1::VERDICT_ALLOW) {
    // An RLS caller cannot switch models or shorten an answer it has
    // already counted: a plan that asks for either is over the limit.
    std::string cannot;
    if (check.model() != mapped->model) {
      cannot = absl::StrCat("the policy would switch the model to \"",
                            check.model(), "\"");
    } else if (mapped->kind == TokenKind::kOutput && mapped->hits > 0 &&
               check.max_output_tokens() < mapped->hits) {
      cannot = absl::StrCat("the policy would cap output at ",
                            check.max_output_tokens(), " tokens, below the ",
                            mapped->hits, " hits");
    }
    v1::ReportRequest report;
    report.set_reservation_id(check.reservation_id());
    if (cannot.empty()) {
      switch (mapped->kind) {
        case TokenKind::kOutput:
          report.mutable_usage()->set_output_tokens(mapped->hits);
          break;
        case TokenKind::kCachedInput:
          report.mutable_usage()->set_cached_input_tokens(mapped->hits);
          [[fallthrough]];
        case TokenKind::kInput:
          report.mutable_usage()->set_input_tokens(mapped->hits);
          break;
      }
      report.set_outcome(v1::OUTCOME_SUCCESS);
    } else {
      // Release the hold: nothing was charged for a call that is refused.
      report.set_outcome(v1::OUTCOME_CANCELLED);
      deny_messages.push_back(absl::StrCat(
          cannot, "; a rate-limit service caller cannot follow that"));
    }
    v1::ReportResponse reported;
    if (!check.reservation_id().empty()) {
      if (absl::Status s = decider_->Report(report, &reported); !s.ok()) {
        return s;
      }
    }
    if (cannot.empty()) {
      Answer(RateLimitResponse::OK, check, request.descriptors_size(),
             response);
      AddHeader(response, "x-bursar-verdict", "allow");
      if (mapped->hits > 0) {
        AddHeader(response, "x-bursar-cost-nanos",
                  absl::StrCat(reported.cost_nanos()));
      }
      return absl::OkStatus();
    }
  } else {
    for (const v1::Reason& reason : check.reasons()) {
      deny_messages.push_back(
          absl::StrCat(reason.rule(), ": ", reason.message()));
    }
  }

  Answer(RateLimitResponse::OVER_LIMIT, check, request.descriptors_size(),
         response);
  AddHeader(response, "x-bursar-verdict", "deny");
  const std::string rules = Rules(check);
  if (!rules.empty()) AddHeader(response, "x-bursar-denied-by", rules);
  if (check.has_retry_after()) {
    const int64_t seconds =
        check.retry_after().seconds() + (check.retry_after().nanos() > 0);
    AddHeader(response, "retry-after", absl::StrCat(seconds));
  }
  response->set_raw_body(absl::StrCat(
      "Over the limit set by Bursar: ", absl::StrJoin(deny_messages, "; "),
      "\n"));
  return absl::OkStatus();
}

grpc::ServerUnaryReactor* EnvoyRateLimitService::ShouldRateLimit(
    grpc::CallbackServerContext* context,
    const envoy::service::ratelimit::v3::RateLimitRequest* request,
    envoy::service::ratelimit::v3::RateLimitResponse* response) {
  static constexpr char kMethod[] =
      "/envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit";
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  auto serve = [this, context, request, response]() {
    const absl::StatusOr<auth::Caller> caller =
        AdmitCall(*auth_, *context, kMethod);
    return ToGrpcStatus(caller.ok()
                            ? limiter_->ShouldRateLimit(*request, response)
                            : caller.status());
  };
  if (gate_ == nullptr) {
    reactor->Finish(serve());
    return reactor;
  }
  const std::chrono::system_clock::time_point deadline = context->deadline();
  CallGate::Pass pass;
  if (absl::Status entered = gate_->Enter(
          deadline == std::chrono::system_clock::time_point::max()
              ? absl::InfiniteFuture()
              : absl::FromChrono(deadline),
          &pass);
      !entered.ok()) {
    reactor->Finish(ToGrpcStatus(entered));
    return reactor;
  }
  // As the Decision service's calls: the place is freed before Finish.
  gate_->Run([reactor, serve, pass = std::move(pass)]() mutable {
    grpc::Status status = serve();
    pass.Leave();
    reactor->Finish(status);
  });
  return reactor;
}

}  // namespace bursar::server
