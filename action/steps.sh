#!/usr/bin/env bash
# The steps of the GitHub Action (../action.yml): `steps.sh STEP`, its inputs in the environment
# (INPUT_* from the action's inputs, GITHUB_* from the runner). Kept out of action.yml so that it is
# checked by ShellCheck and tested as it runs (tests/test_examples.py, with a stand-in `gh`).
#
# plan     reconciler plan --out PLAN_FILE --markdown; outputs exitcode, markdown, artifact
# comment  the plan as one pull-request comment, edited in place by later runs (a hidden marker
#          per workspace and environment)
# fetch    the plan file reviewed on the pull request merged as GITHUB_SHA (an artifact of its
#          plan run); outputs plan-file, pr
# apply    reconciler apply PLAN_FILE; a stale plan is refused: outputs stale=true, changes nothing
# replan   after a stale plan: the plan now, saved for review; outputs markdown, artifact
# verify   reconciler plan --detailed-exitcode: after an apply, the cluster matches the manifests
set -euo pipefail

workspace="${INPUT_WORKSPACE:-${RECONCILER_WORKSPACE:-default}}"
environment="${INPUT_ENVIRONMENT:-}"
plan_file="${INPUT_PLAN_FILE:-plan.json}"
temp="${RUNNER_TEMP:-/tmp}"
marker="<!-- reconciler-plan:workspace=${workspace} env=${environment:-none} -->"

# The options every cluster command gets from the inputs.
args=(--manifests "${INPUT_MANIFESTS:-manifests}")
if [[ -n "${INPUT_WORKSPACE:-}" ]]; then args+=(--workspace "$INPUT_WORKSPACE"); fi
if [[ -n "$environment" ]]; then args+=(--env "$environment"); fi

output() { echo "$1=$2" >> "$GITHUB_OUTPUT"; }
fail() { echo "::error::$1"; exit 1; }

# An artifact's name: one per workspace, environment and commit (names cannot hold '/').
artifact_name() {
  local name="reconciler-plan-${workspace}-${environment:-none}-$1"
  echo "${name//\//-}"
}

install() {
  local version="${INPUT_VERSION:-}"
  if [[ -z "$version" ]]; then
    python -m pip install --quiet "${GITHUB_ACTION_PATH:?}"  # the action's own checkout, at its ref
  elif [[ "$version" =~ ^[0-9][0-9A-Za-z.+!-]*$ ]]; then
    python -m pip install --quiet "es-inference-reconciler==$version"
  else
    fail "version: '$version' is not a version number (leave it empty to install the action's own ref)"
  fi
  reconciler --version
}

validate() {
  local only=(--manifests "${INPUT_MANIFESTS:-manifests}")
  if [[ -n "$environment" ]]; then only+=(--env "$environment"); fi
  reconciler validate --offline "${only[@]}"
}

plan() {
  local markdown="$temp/reconciler-plan.md" code=0
  reconciler plan --out "$plan_file" --markdown "${args[@]}" > "$markdown" || code=$?
  output exitcode "$code"
  output markdown "$markdown"
  output artifact "$(artifact_name "${HEAD_SHA:-$GITHUB_SHA}")"
}

# The body of the plan comment: the marker first, so that the next run finds it.
comment_body() {
  local markdown="$1" heading="$2"
  {
    echo "$marker"
    echo "$heading"
    echo
    if [[ -s "$markdown" ]]; then cat "$markdown"; else echo "The plan could not be made: see the job's log."; fi
    echo
    echo "<sub>${GITHUB_WORKFLOW:-} run ${GITHUB_RUN_ID:-} for ${HEAD_SHA:-$GITHUB_SHA}," \
      "workspace ${workspace}${environment:+, environment $environment}.</sub>"
  } > "$temp/reconciler-comment.md"
  jq -Rs '{body: .}' "$temp/reconciler-comment.md"
}

comment() {
  local pr="${PR_NUMBER:?the comment needs a pull request}"
  local markdown="${MARKDOWN:-$temp/reconciler-plan.md}" heading="${HEADING:-}" id
  comment_body "$markdown" "$heading" > "$temp/reconciler-comment.json"
  # The oldest comment that starts with this workspace's and environment's marker.
  id=$(gh api --paginate "repos/$GITHUB_REPOSITORY/issues/$pr/comments" \
    --jq ".[] | select(.body | startswith(\"$marker\")) | .id" | head -n 1)
  if [[ -n "$id" ]]; then
    gh api --method PATCH "repos/$GITHUB_REPOSITORY/issues/comments/$id" \
      --input "$temp/reconciler-comment.json" --jq .html_url
  else
    gh api --method POST "repos/$GITHUB_REPOSITORY/issues/$pr/comments" \
      --input "$temp/reconciler-comment.json" --jq .html_url
  fi
}

fetch() {
  local pr head name found run artifact dir="$temp/reconciler-reviewed"
  pr=$(gh api "repos/$GITHUB_REPOSITORY/commits/$GITHUB_SHA/pulls" \
    --jq '[.[] | select(.merged_at != null)][0].number // empty')
  [[ -n "$pr" ]] || fail "$GITHUB_SHA was not merged from a pull request: there is no reviewed plan to apply. \
Open a pull request, or run: reconciler plan --out plan.json && reconciler apply plan.json"
  head=$(gh api "repos/$GITHUB_REPOSITORY/pulls/$pr" --jq .head.sha)
  name=$(artifact_name "$head")
  # The newest unexpired artifact of that name: the pull request's plan, or a plan made again
  # after it was found stale (see replan).
  found=$(gh api "repos/$GITHUB_REPOSITORY/actions/artifacts?name=$name&per_page=100" \
    --jq '[.artifacts[] | select(.expired | not)] | sort_by(.created_at) | last // empty
          | "\(.workflow_run.id) \(.id)"')
  [[ -n "$found" ]] || fail "no plan named $name: pull request #$pr was merged without a plan of its \
last commit ($head) for workspace $workspace. Re-run its plan, or run: reconciler plan --out plan.json"
  read -r run artifact <<< "$found"
  mkdir -p "$dir"
  gh api "repos/$GITHUB_REPOSITORY/actions/artifacts/$artifact/zip" > "$dir/plan.zip"
  python -m zipfile -e "$dir/plan.zip" "$dir"
  [[ -f "$dir/$(basename "$plan_file")" ]] || fail "artifact $name (run $run) holds no $(basename "$plan_file")"
  echo "Applying the plan reviewed on pull request #$pr (commit $head, run $run)."
  output plan-file "$dir/$(basename "$plan_file")"
  output pr "$pr"
  output head "$head"
}

apply() {
  local log="$temp/reconciler-apply.log" code=0
  reconciler apply "${PLAN_FILE:?}" --lock-timeout "${INPUT_LOCK_TIMEOUT:-10m}" "${args[@]}" \
    2> "$log" || code=$?
  cat "$log" >&2
  if [[ "$code" == 0 ]]; then
    output stale false
  elif grep -q "the saved plan is stale" "$log"; then
    echo "::error::The plan reviewed on pull request #${PR_NUMBER:-?} is stale: the cluster or the state \
moved since it was made. Nothing was changed. The plan now is posted on the pull request: review it, \
then re-run this job to apply exactly that plan."
    output stale true
  else
    exit "$code"
  fi
}

replan() {
  local markdown="$temp/reconciler-plan.md" code=0
  reconciler plan --out "$plan_file" --markdown "${args[@]}" > "$markdown" || code=$?
  [[ "$code" == 0 ]] || fail "the plan made again has errors (see the pull request comment)"
  output markdown "$markdown"
  output artifact "$(artifact_name "${HEAD_SHA:?}")"
}

verify() {
  local code=0
  reconciler plan --detailed-exitcode "${args[@]}" > "$temp/reconciler-verify.txt" || code=$?
  case "$code" in
    0) echo "The cluster matches the manifests." ;;
    2) cat "$temp/reconciler-verify.txt"
       fail "after the apply the cluster still differs from the manifests (shown above); run: reconciler plan" ;;
    *) cat "$temp/reconciler-verify.txt"; exit "$code" ;;
  esac
}

case "${1:-}" in
  install | validate | plan | comment | fetch | apply | replan | verify) "$1" ;;
  *) fail "steps.sh: unknown step '${1:-}'" ;;
esac
