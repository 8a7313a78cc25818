#!/usr/bin/env bash
# Mutation testing of the semantic core with mutmut 3 (configured in pyproject.toml's
# [tool.mutmut]; docs/testing.md records the last score). Slow (hours for every module on two
# CPUs), so it is not part of CI. Run from anywhere, with the test extra installed:
#
#   bench/mutation.sh                                   # every configured module
#   bench/mutation.sh 'leadlang.runtime.policy*'        # one module (mutant-name globs)
#
# It works in ./mutants (ignored by git), prints the mutants that were not killed, then the
# counts; `mutmut show NAME` prints one mutant's diff, `mutmut browse` explores them.
set -euo pipefail
cd "$(dirname "$0")/.."
unset LEADLANG_UPDATE_GOLDENS  # the golden tests must judge, not regenerate
mutmut run --max-children "${MUTMUT_CHILDREN:-$(nproc)}" "$@"
mutmut results
mutmut export-cicd-stats >/dev/null
cat mutants/mutmut-cicd-stats.json; echo
