#ifndef BURSAR_POLICY_EXPR_PROGRAM_H_
#define BURSAR_POLICY_EXPR_PROGRAM_H_

// Phase 4 of the expression compiler: plans a checked AST into a Program,
// a flat array of typed instructions in post-order (operands before the
// operation) that is evaluated recursively without allocating. Operations
// are chosen by type at build time (int64 compare, double add, ...), int
// operands that meet doubles get an explicit conversion, and constant
// subexpressions are folded. A constant subexpression that always fails
// (`1 / 0`) is a CompileError. Internal to policy/expr.

#include "policy/expr/checker.h"
#include "policy/expr/expr.h"

namespace bursar::policy::expr {

// Builds the program; `checked` must come from a Check without errors.
CompileResult BuildProgram(CheckedAst checked);

// The number of instructions of a program that BuildProgram made, for
// tests of constant folding; -1 for any other Program.
int InstructionCount(const Program& program);

}  // namespace bursar::policy::expr

#endif  // BURSAR_POLICY_EXPR_PROGRAM_H_
