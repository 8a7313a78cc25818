#!/usr/bin/env bash
# Mutation testing of the semantic core with mutmut 3 (configured in pyproject.toml's
# [tool.mutmut]; docs/testing.md records the last score). Slow (hours for every module on two
# CPUs), so it is not part of CI. Run from anywhere, with the test extra installed:
#
#   bench/mutation.sh                                   # every configured module
#   bench/mutation.sh 'leadlang.runtime.policy*'        # one module (mutant-name globs)
#   MUTMUT_TESTS='test_values.py test_codegen.py' bench/mutation.sh 'leadlang.runtime.values*'
#
# MUTMUT_TESTS narrows the judging tests to the named test files (a pytest `-k` on their names,
# through PYTEST_ADDOPTS): far faster on a loaded machine, but a survivor may then be killed by
# a test left out, so say which files judged a score when you record it. The selection is
# cached in ./mutants with the results: remove ./mutants when you change it.
#
# It works in ./mutants (ignored by git), prints the mutants that were not killed, then the
# counts; `mutmut show NAME` prints one mutant's diff, `mutmut browse` explores them.
set -euo pipefail
cd "$(dirname "$0")/.."
unset LEADLANG_UPDATE_GOLDENS  # the golden tests must judge, not regenerate
if [[ -n "${MUTMUT_TESTS:-}" ]]; then
  keyword=""
  for file in $MUTMUT_TESTS; do
    keyword+="${keyword:+ or }$(basename "$file")"
  done
  export PYTEST_ADDOPTS="${PYTEST_ADDOPTS:-} -k '$keyword'"
fi
mutmut run --max-children "${MUTMUT_CHILDREN:-$(nproc)}" "$@"
mutmut results
mutmut export-cicd-stats >/dev/null
cat mutants/mutmut-cicd-stats.json; echo
