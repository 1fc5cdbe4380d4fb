# lib.sh: what experiment.sh and holds.sh share. Source it after setting
# ROOT (the checkout) and defining die(); it defines functions only and runs
# nothing on its own.
#
#   lib_config        DATABASE_URL and BASE_URL, from the environment or from
#                     .holdfast/env (written by `holdfast dev`)
#   lib_find_k6       sets K6: $K6, $(go env GOPATH)/bin/k6, k6 on PATH, or
#                     `go install go.k6.io/k6@$K6_VERSION`
#   lib_find_holdfast sets HOLDFAST: $HOLDFAST, or built from this checkout
#                     into the directory given as its argument
#   sql               runs one statement on DATABASE_URL, unaligned, tuples only
#   lib_env_value     prints one KEY's value from .holdfast/env, or nothing
#   lib_metric        prints a metric's field from a k6 --summary-export file
#
# shellcheck shell=bash

K6_VERSION=v1.8.1

# lib_config sets and exports DATABASE_URL and sets BASE_URL (no trailing
# slash). When DATABASE_URL is unset it is read from .holdfast/env, and so
# is the address when BASE_URL is unset too.
lib_config() {
	local env_file="$ROOT/.holdfast/env"
	if [[ -z "${DATABASE_URL:-}" && -f "$env_file" ]]; then
		# Parsed, not sourced: a URL may hold characters the shell would act on.
		local file_db='' file_addr='' key value host port
		while IFS='=' read -r key value || [[ -n "$key" ]]; do
			case "$key" in
			DATABASE_URL) file_db="$value" ;;
			HOLDFAST_ADDR) file_addr="$value" ;;
			esac
		done <"$env_file"
		[[ -n "$file_db" ]] || die "$env_file has no DATABASE_URL line"
		DATABASE_URL="$file_db"
		echo "using DATABASE_URL from $env_file"
		if [[ -z "${BASE_URL:-}" && -n "$file_addr" ]]; then
			# A listen address: ":8080" or "0.0.0.0:8080" is reached on loopback.
			host="${file_addr%:*}" port="${file_addr##*:}"
			case "$host" in "" | 0.0.0.0 | "[::]" | "::") host=127.0.0.1 ;; esac
			BASE_URL="http://$host:$port"
			echo "using BASE_URL $BASE_URL from HOLDFAST_ADDR in $env_file"
		fi
	fi
	[[ -n "${DATABASE_URL:-}" ]] ||
		die "DATABASE_URL is not set and $env_file does not exist: start \`holdfast dev\` first, or set DATABASE_URL"
	export DATABASE_URL
	BASE_URL="${BASE_URL:-http://127.0.0.1:8080}"
	BASE_URL="${BASE_URL%/}"
	command -v psql >/dev/null || die "psql is not on PATH (apt-get install postgresql-client)"
}

# gobin is where `go install` puts binaries.
gobin() {
	local dir
	dir="$(go env GOBIN)"
	if [[ -z "$dir" ]]; then
		dir="$(go env GOPATH)"
		dir="${dir%%:*}/bin"
	fi
	echo "$dir"
}

lib_find_k6() {
	if [[ -n "${K6:-}" ]]; then
		local given="$K6"
		[[ -x "$K6" ]] || K6="$(command -v "$K6")" || die "K6=$given is not an executable"
	elif command -v go >/dev/null && [[ -x "$(gobin)/k6" ]]; then
		K6="$(gobin)/k6"
	elif command -v k6 >/dev/null; then
		K6="$(command -v k6)"
	else
		command -v go >/dev/null || die "k6 not found and go is not on PATH to install it; set K6"
		echo "k6 not found: go install go.k6.io/k6@$K6_VERSION (this takes a while)"
		go install "go.k6.io/k6@$K6_VERSION"
		K6="$(gobin)/k6"
		[[ -x "$K6" ]] || die "go install did not leave k6 at $K6"
	fi
}

# lib_find_holdfast sets HOLDFAST, building it once into $1 rather than
# `go run` per check.
lib_find_holdfast() {
	local build_dir="$1"
	if [[ -n "${HOLDFAST:-}" ]]; then
		[[ -x "$HOLDFAST" ]] || HOLDFAST="$(command -v "$HOLDFAST")" || die "HOLDFAST=$HOLDFAST is not an executable"
	else
		command -v go >/dev/null || die "go is not on PATH to build holdfast; set HOLDFAST"
		echo "building holdfast from $ROOT"
		(cd "$ROOT" && go build -o "$build_dir/holdfast" ./cmd/holdfast)
		HOLDFAST="$build_dir/holdfast"
	fi
}

sql() {
	psql "$DATABASE_URL" -XAtq -v ON_ERROR_STOP=1 -c "$1"
}

# lib_env_value prints the value of KEY ($1) in .holdfast/env, or nothing
# when the file or the line is missing (parsed, not sourced, as above).
lib_env_value() {
	local env_file="$ROOT/.holdfast/env" key value
	[[ -f "$env_file" ]] || return 0
	while IFS='=' read -r key value || [[ -n "$key" ]]; do
		if [[ "$key" == "$1" ]]; then
			echo "$value"
			return 0
		fi
	done <"$env_file"
}

# lib_metric prints a metric's field (default count) from a k6
# --summary-export file, floored; 0 when k6 did not record it. It needs jq
# or python3.
lib_metric() {
	local file="$1" name="$2" field="${3:-count}"
	if command -v jq >/dev/null; then
		jq -r --arg n "$name" --arg f "$field" '.metrics[$n][$f] // 0 | floor' "$file"
	else
		python3 - "$file" "$name" "$field" <<-'EOF'
			import json, math, sys
			m = json.load(open(sys.argv[1]))["metrics"].get(sys.argv[2], {})
			print(math.floor(m.get(sys.argv[3], 0)))
		EOF
	fi
}
