# Sourced by the bench scripts (not run on its own).
#
#   sipp_counts FILE...
#
# Prints "COMPLETED FAILED": the calls sipp reported successful and failed
# in its final statistics, summed over the given outputs (one sipp run
# each).
sipp_counts() {
  local file ok failed completed=0 lost=0
  for file in "$@"; do
    read -r ok failed < <(awk -F'|' '/Successful call/ {gsub(/ /,"",$3); s=$3} /Failed call/ {gsub(/ /,"",$3); f=$3} END {print s+0, f+0}' "$file")
    completed=$((completed + ok)); lost=$((lost + failed))
  done
  echo "$completed $lost"
}
