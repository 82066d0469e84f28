#ifndef BURSAR_TESTS_MODEL_REFERENCE_H_
#define BURSAR_TESTS_MODEL_REFERENCE_H_

// A small, obviously correct reference model of Bursar's budget semantics
// (DESIGN.md section 3, storage/ledger.h, docs/policy-language.md
// "on_exhausted", docs/decisions/002), for the model-based test
// (tests/model_based_test.cc). It shares no code with bursard's decision
// path: it keeps plain maps of budgets, counters and holds, and computes
// periods, costs and the on_exhausted chain from their definitions.
//
// What it covers: budgets (selector, per_label, period, timezone, amount),
// Check (worst-case estimate, all-or-nothing reservation against every
// matching budget, request_id replays, dry runs, on_exhausted downgrade /
// cap_to_fit / deny), Report (exact cost at the prices the Check used,
// idempotent, after expiry), hold expiry, calendar periods. Not covered:
// routes, SLOs, rate limits and concurrency pools (in-memory state with
// their own tests), KPIs and alerts.
//
// Money is int64 nanos; a cost is rounded up once per call.

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <tuple>
#include <vector>

#include "absl/time/time.h"
#include "bursar/v1/admin.pb.h"
#include "bursar/v1/decision.pb.h"

namespace bursar::model {

// USD per 1M tokens as nanos per 1M tokens ("2.00" -> 2'000'000'000).
struct Price {
  int64_t input_nanos_per_mtok = 0;
  int64_t cached_input_nanos_per_mtok = 0;
  int64_t output_nanos_per_mtok = 0;
  std::string provider;
};

// ceil((uncached*in + cached*cached_in + out*out_price) / 1e6).
int64_t CostNanos(const Price& price, int64_t input_tokens,
                  int64_t cached_input_tokens, int64_t output_tokens);

struct ExhaustedStep {
  enum class Kind { kDowngrade, kCapToFit, kDeny };
  Kind kind = Kind::kDeny;
  std::map<std::string, std::string> downgrade;  // from -> to
  int64_t min_output_tokens = 1;                 // cap_to_fit
  std::string message;                           // deny
};

// One policy the test pushes: a pricing catalog, defaults and an
// on_exhausted chain. Yaml() is the policy file bursard gets.
struct PolicyVariant {
  std::string name;
  std::map<std::string, Price> prices;
  int64_t default_max_output_tokens = 1000;
  std::vector<ExhaustedStep> on_exhausted;
  std::string Yaml() const;
};

// The variants the test switches between (pricing changes, on_exhausted
// changes).
std::vector<PolicyVariant> TestPolicies();

// Where a calendar period of `period` containing `now` starts in `tz`
// (InfinitePast for PERIOD_NONE): local midnight for day, Monday for week,
// the 1st for month, the top of the local hour for hour.
absl::Time PeriodStart(v1::Period period, absl::Time now,
                       const absl::TimeZone& tz);

// An error the model expects, as a gRPC status code (0: OK).
struct Expected {
  int code = 0;
};

class Reference {
 public:
  // Counters of one budget instance in one period.
  struct Counters {
    int64_t spent_nanos = 0;
    int64_t held_nanos = 0;
    int64_t unreported_nanos = 0;
  };
  // (budget, instance, period start in Unix seconds, 0 for none).
  using CounterKey = std::tuple<std::string, std::string, int64_t>;

  struct Hold {
    enum class State { kOpen, kSettled, kExpired };
    State state = State::kOpen;
    int64_t estimate_nanos = 0;
    int64_t cost_nanos = 0;
    bool reported_after_expiry = false;
    absl::Time expires_at;
    Price price;
    std::vector<CounterKey> charges;
    // The answer a replay of its request_id gets (without budgets).
    v1::CheckResponse answer;
  };

  Reference(std::vector<PolicyVariant> variants, absl::Duration ttl)
      : variants_(std::move(variants)), ttl_(ttl) {}

  // The active policy and its version id (bursard's content hash).
  void SetPolicy(int variant, std::string version) {
    variant_ = variant;
    version_ = std::move(version);
  }
  int variant() const { return variant_; }

  int SetBudget(const v1::Budget& budget);
  int DeleteBudget(const std::string& name);

  // The answer bursard must give. A new reservation's id is bursard's:
  // the model adopts `issued_id` (the id in bursard's answer) for it.
  // Returns the gRPC code; fills *expected for OK.
  int Check(const v1::CheckRequest& request, absl::Time now,
            const std::string& issued_id, v1::CheckResponse* expected);
  int Report(const v1::ReportRequest& request, v1::ReportResponse* expected);
  // Expires every open hold whose TTL has passed; returns how many.
  int Expire(absl::Time now);

  // GetBudget(name, instance) as bursard must answer it; nullopt: NOT_FOUND.
  std::optional<v1::GetBudgetResponse> GetBudget(const std::string& name,
                                                 const std::string& instance,
                                                 absl::Time now) const;

  const std::map<std::string, v1::Budget>& budgets() const { return budgets_; }
  // Reservation ids in the order they were issued.
  const std::vector<std::string>& issued() const { return issued_; }
  const std::map<std::string, Hold>& holds() const { return holds_; }
  // Sum of the estimates of open holds.
  int64_t open_held_nanos() const;

 private:
  struct Match {
    std::string budget;
    std::string instance;
    absl::Time period_start;
    CounterKey key;
  };
  std::vector<Match> Matches(const std::map<std::string, std::string>& labels,
                             absl::Time now) const;
  v1::BudgetStanding Standing(const Match& m) const;

  const std::vector<PolicyVariant> variants_;
  const absl::Duration ttl_;
  int variant_ = 0;
  std::string version_;
  std::map<std::string, v1::Budget> budgets_;
  std::map<CounterKey, Counters> counters_;
  std::map<std::string, Hold> holds_;
  std::map<std::string, std::string> by_request_id_;
  std::vector<std::string> issued_;
};

}  // namespace bursar::model

#endif  // BURSAR_TESTS_MODEL_REFERENCE_H_
