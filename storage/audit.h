#ifndef BURSAR_STORAGE_AUDIT_H_
#define BURSAR_STORAGE_AUDIT_H_

// Who changed what, when and why: the audit log that every admin change to
// the database (budgets, policy versions) writes in the same WriteBatch as
// the change itself.

#include <optional>
#include <string>

#include "absl/time/time.h"
#include "storage/budget.h"

namespace bursar::storage {

// Who makes a change, and why (both go to the audit log).
struct Actor {
  std::string name;
  std::string reason;
  // The role the change was made with (server/auth: "finance",
  // "policy-admin", ...); "" when the server did not authenticate the actor.
  std::string role;
};

struct AuditEntry {
  absl::Time time;
  std::string actor;
  // Actor::role: the role the change was made with, "" if unauthenticated.
  std::string role;
  // "budget.set", "budget.delete", "policy.push", "policy.activate".
  std::string action;
  // "budget:<name>", "policy:<version>".
  std::string target;
  // Budget changes: the budget before and after; unset when it did not
  // exist.
  std::optional<BudgetSpec> before;
  std::optional<BudgetSpec> after;
  // Changes to other objects (policy versions): the object before and after
  // as JSON, as its store wrote it (storage/README.md); empty when it did
  // not exist.
  std::string before_json;
  std::string after_json;
  std::string reason;
};

}  // namespace bursar::storage

#endif  // BURSAR_STORAGE_AUDIT_H_
