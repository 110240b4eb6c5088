#!/usr/bin/env bash
# Install what the real-service tests need: Debian packages (Open vSwitch, ClickHouse 18.16, capture
# tools) and a Kafka broker classpath from Maven Central. Idempotent and fast when already done;
# used by `make test` and .ci/run on a fresh Debian 12 machine (root).
#
# Environment:
#   NETOBS_CACHE          cache root (default ~/.cache/netobs); Kafka jars go to $NETOBS_CACHE/kafka/libs
#   NETOBS_KAFKA_VERSION  override the Kafka version below
#   NETOBS_SKIP_APT=1     skip the Debian packages step
#   NETOBS_SKIP_KAFKA=1   skip the Kafka jars step
#   NETOBS_SKIP_GOFLOW2=1 skip building goflow2 (the peer collector the benchmarks and the
#                         goflow2-protobuf input tests run); it goes to $NETOBS_CACHE/go/bin
#   NETOBS_SKIP_DEPLOY=1  skip the deployment tools (helm v4, kubeconform, the Kubernetes API schemas
#                         from k8s.io/kubernetes' OpenAPI, the compose-spec schema from compose-go),
#                         all from the Go module proxy into $NETOBS_CACHE; and the image tools (Debian:
#                         debootstrap, umoci, runc)
#   NETOBS_SKIP_BROWSER=1 skip playwright-core (npm) for the explorer's browser tests; it drives
#                         Debian's chromium (above) from $NETOBS_CACHE/npm
#   NETOBS_SKIP_CHGO=1    skip building the clickhouse-go v2 test client ($NETOBS_CACHE/chgo) from
#                         tests/dashboards/chgo/main.go and the Go module proxy
set -euo pipefail

# Debian packages the tests use. Others may add to this list.
APT_PACKAGES="debootstrap umoci runc openvswitch-switch clickhouse-server clickhouse-client tcpdump ethtool iproute2 iptables tshark dnsmasq-base bind9-dnsutils curl openssl softflowd pmacct zookeeperd poppler-utils fonts-dejavu-core prometheus-alertmanager chromium"
# Only installed when the command is missing (CI machines usually have a JDK and Maven already).
JAVA_PACKAGES="openjdk-17-jre-headless"
MAVEN_PACKAGES="maven"

KAFKA_VERSION="${NETOBS_KAFKA_VERSION:-4.1.1}"
NETOBS_CACHE="${NETOBS_CACHE:-$HOME/.cache/netobs}"
KAFKA_LIBS="$NETOBS_CACHE/kafka/libs"
GOFLOW2_VERSION="${NETOBS_GOFLOW2_VERSION:-v2.2.6}"
GOFLOW2_BIN="$NETOBS_CACHE/go/bin"
PLAYWRIGHT_VERSION="${NETOBS_PLAYWRIGHT_VERSION:-1.65.2}"
CHGO_VERSION="${NETOBS_CLICKHOUSE_GO_VERSION:-v2.51.0}"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

log() { echo "install-services: $*"; }
warn() { echo "install-services: WARNING: $*" >&2; }

# --- privileges -------------------------------------------------------------------------------
SUDO=""
CAN_ROOT=1
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
        SUDO="sudo -n"
    else
        CAN_ROOT=0
    fi
fi

missing_packages() {
    local pkg status
    for pkg in "$@"; do
        status="$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)"
        [ "$status" = "install ok installed" ] || echo "$pkg"
    done
}

# Keep package postinst scripts from starting daemons (clickhouse-server, ovs): the tests start
# their own on free loopback ports. Only added when the machine has no policy of its own.
POLICY_RC=/usr/sbin/policy-rc.d
POLICY_ADDED=0
cleanup_policy() {
    if [ "$POLICY_ADDED" = 1 ]; then $SUDO rm -f "$POLICY_RC"; fi
}
trap cleanup_policy EXIT

install_apt() {
    local wanted="$APT_PACKAGES" missing
    command -v java >/dev/null 2>&1 || wanted="$wanted $JAVA_PACKAGES"
    command -v mvn >/dev/null 2>&1 || wanted="$wanted $MAVEN_PACKAGES"
    command -v npm >/dev/null 2>&1 || wanted="$wanted nodejs npm"  # playwright-core for the explorer tests
    # shellcheck disable=SC2086
    missing="$(missing_packages $wanted | tr '\n' ' ')"
    if [ -z "${missing// /}" ]; then
        log "Debian packages already installed: $wanted"
        return 0
    fi
    if ! command -v apt-get >/dev/null 2>&1; then
        warn "no apt-get here; missing packages: $missing (tests needing them will skip)"
        return 0
    fi
    if [ "$CAN_ROOT" = 0 ]; then
        warn "not root and no passwordless sudo; missing packages: $missing (tests needing them will skip)"
        return 0
    fi
    if [ ! -e "$POLICY_RC" ]; then
        printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$POLICY_RC" >/dev/null
        $SUDO chmod 755 "$POLICY_RC"
        POLICY_ADDED=1
    fi
    export DEBIAN_FRONTEND=noninteractive
    log "apt-get update"
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -q -o DPkg::Lock::Timeout=300
    log "apt-get install -y $missing"
    # shellcheck disable=SC2086
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q -o Dpkg::Use-Pty=0 \
        -o DPkg::Lock::Timeout=300 --no-install-recommends $missing
}

# --- Kafka jars -------------------------------------------------------------------------------
install_kafka() {
    local stamp="$KAFKA_LIBS/.netobs-kafka-version"
    if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$KAFKA_VERSION" ] \
        && [ -f "$KAFKA_LIBS/kafka_2.13-$KAFKA_VERSION.jar" ]; then
        log "Kafka $KAFKA_VERSION jars already in $KAFKA_LIBS"
        return 0
    fi
    if ! command -v mvn >/dev/null 2>&1 || ! command -v java >/dev/null 2>&1; then
        warn "java or mvn not found; Kafka tests will skip"
        return 0
    fi
    # Download into a scratch dir and swap it in, so an interrupted run never leaves a half classpath
    # (or two Kafka versions side by side) behind.
    local tmp="$KAFKA_LIBS.tmp.$$"
    rm -rf "$tmp"
    mkdir -p "$(dirname "$KAFKA_LIBS")"
    log "fetching Kafka $KAFKA_VERSION jars with Maven into $KAFKA_LIBS (~/.m2 caches downloads)"
    if ! mvn -q -B -Dstyle.color=never -f "$HERE/kafka/pom.xml" \
        -Dkafka.version="$KAFKA_VERSION" \
        dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory="$tmp" </dev/null; then
        rm -rf "$tmp"
        warn "mvn failed to fetch Kafka $KAFKA_VERSION; Kafka tests will skip"
        # In CI a missing broker must fail loudly; on a laptop (offline) the tests just skip.
        if [ -n "${CI:-}" ] || [ "${NETOBS_REQUIRE_SERVICES:-0}" = 1 ]; then return 1; fi
        return 0
    fi
    echo "$KAFKA_VERSION" >"$tmp/.netobs-kafka-version"
    rm -rf "$KAFKA_LIBS"
    mv "$tmp" "$KAFKA_LIBS"
    log "Kafka $KAFKA_VERSION: $(find "$KAFKA_LIBS" -name '*.jar' | wc -l) jars in $KAFKA_LIBS"
}

# --- goflow2 (Go, from the module proxy) ------------------------------------------------------
install_goflow2() {
    local stamp="$GOFLOW2_BIN/.goflow2-version"
    if [ -x "$GOFLOW2_BIN/goflow2" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$GOFLOW2_VERSION" ]; then
        log "goflow2 $GOFLOW2_VERSION already in $GOFLOW2_BIN"
        return 0
    fi
    local go
    go="$(command -v go || true)"
    [ -z "$go" ] && [ -x /usr/local/go/bin/go ] && go=/usr/local/go/bin/go
    if [ -z "$go" ]; then
        warn "no Go toolchain; goflow2 tests will skip"
        if [ -n "${CI:-}" ] || [ "${NETOBS_REQUIRE_SERVICES:-0}" = 1 ]; then return 1; fi
        return 0
    fi
    mkdir -p "$GOFLOW2_BIN"
    log "building goflow2 $GOFLOW2_VERSION with $go into $GOFLOW2_BIN (module cache: $NETOBS_CACHE/go/mod)"
    if ! GOBIN="$GOFLOW2_BIN" GOMODCACHE="$NETOBS_CACHE/go/mod" GOFLAGS=-mod=mod \
        "$go" install "github.com/netsampler/goflow2/v2/cmd/goflow2@$GOFLOW2_VERSION" </dev/null; then
        warn "go install goflow2 failed; goflow2 tests will skip"
        if [ -n "${CI:-}" ] || [ "${NETOBS_REQUIRE_SERVICES:-0}" = 1 ]; then return 1; fi
        return 0
    fi
    echo "$GOFLOW2_VERSION" >"$stamp"
}

# --- deployment tools (Go module proxy) ---------------------------------------------------------
HELM_VERSION="${NETOBS_HELM_VERSION:-v4.3.2}"
KUBECONFORM_VERSION="${NETOBS_KUBECONFORM_VERSION:-v0.7.0}"
K8S_API_VERSION="${NETOBS_K8S_API_VERSION:-v1.34.2}"
COMPOSE_GO_VERSION="${NETOBS_COMPOSE_GO_VERSION:-v2.9.1}"

go_cmd() {
    local go
    go="$(command -v go || true)"
    [ -z "$go" ] && [ -x /usr/local/go/bin/go ] && go=/usr/local/go/bin/go
    echo "$go"
}

go_install_pinned() {  # name module@version
    local name="$1" target="$2" version="${2##*@}" go
    local stamp="$GOFLOW2_BIN/.$name-version"
    if [ -x "$GOFLOW2_BIN/$name" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$version" ]; then
        log "$name $version already in $GOFLOW2_BIN"
        return 0
    fi
    go="$(go_cmd)"
    [ -n "$go" ] || { warn "no Go toolchain; $name missing"; return 1; }
    mkdir -p "$GOFLOW2_BIN"
    log "building $name $version into $GOFLOW2_BIN"
    GOBIN="$GOFLOW2_BIN" GOMODCACHE="$NETOBS_CACHE/go/mod" GOFLAGS=-mod=mod "$go" install "$target" </dev/null \
        || { warn "go install $target failed"; return 1; }
    echo "$version" >"$stamp"
}

install_deploy_tools() {
    local ok=0 go dir out
    go_install_pinned helm "helm.sh/helm/v4/cmd/helm@$HELM_VERSION" || ok=1
    go_install_pinned kubeconform "github.com/yannh/kubeconform/cmd/kubeconform@$KUBECONFORM_VERSION" || ok=1
    go="$(go_cmd)"
    out="$NETOBS_CACHE/k8s-schemas/$K8S_API_VERSION"
    if [ ! -f "$out/daemonset-apps-v1.json" ] && [ -n "$go" ]; then
        # The Kubernetes API's own OpenAPI document, from the k8s.io/kubernetes module (18 MB zip).
        dir="$(GOMODCACHE="$NETOBS_CACHE/go/mod" GOFLAGS=-mod=mod "$go" mod download -json \
            "k8s.io/kubernetes@$K8S_API_VERSION" | python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])')" \
            && python3 "$HERE/../deploy/tools/k8s_schemas.py" "$dir/api/openapi-spec/swagger.json" "$out.tmp" \
            && rm -rf "$out" && mv "$out.tmp" "$out" || { warn "Kubernetes schemas failed"; ok=1; }
    fi
    out="$NETOBS_CACHE/compose-spec/compose-spec.json"
    if [ ! -f "$out" ] && [ -n "$go" ]; then
        dir="$(GOMODCACHE="$NETOBS_CACHE/go/mod" GOFLAGS=-mod=mod "$go" mod download -json \
            "github.com/compose-spec/compose-go/v2@$COMPOSE_GO_VERSION" \
            | python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])')" \
            && mkdir -p "$(dirname "$out")" && cp "$dir/schema/compose-spec.json" "$out" \
            || { warn "compose-spec schema failed"; ok=1; }
    fi
    if [ "$ok" != 0 ] && { [ -n "${CI:-}" ] || [ "${NETOBS_REQUIRE_SERVICES:-0}" = 1 ]; }; then return 1; fi
    return 0
}

# --- playwright-core (npm): drives Debian's chromium in the explorer's browser tests -------------
install_browser_driver() {
    local dir="$NETOBS_CACHE/npm" stamp="$NETOBS_CACHE/npm/.playwright-version"
    if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$PLAYWRIGHT_VERSION" ] && [ -d "$dir/node_modules/playwright-core" ]; then
        log "playwright-core $PLAYWRIGHT_VERSION already in $dir"
        return 0
    fi
    if ! command -v npm >/dev/null 2>&1; then
        warn "no npm; the explorer's browser tests will skip"
        if [ -n "${CI:-}" ] || [ "${NETOBS_REQUIRE_SERVICES:-0}" = 1 ]; then return 1; fi
        return 0
    fi
    mkdir -p "$dir"
    [ -f "$dir/package.json" ] || echo '{"name": "netobs-test-tools", "private": true}' >"$dir/package.json"
    log "npm install playwright-core@$PLAYWRIGHT_VERSION into $dir (no browser download: it drives /usr/bin/chromium)"
    if ! (cd "$dir" && npm install --no-audit --no-fund --silent "playwright-core@$PLAYWRIGHT_VERSION" </dev/null); then
        warn "npm install playwright-core failed; the explorer's browser tests will skip"
        if [ -n "${CI:-}" ] || [ "${NETOBS_REQUIRE_SERVICES:-0}" = 1 ]; then return 1; fi
        return 0
    fi
    echo "$PLAYWRIGHT_VERSION" >"$stamp"
}

# --- clickhouse-go v2 test client (Go module proxy) ------------------------------------------
install_chgo() {
    local dir="$NETOBS_CACHE/chgo" stamp="$NETOBS_CACHE/chgo/.version" src="$HERE/../tests/dashboards/chgo/main.go"
    local want
    want="$CHGO_VERSION $(sha256sum "$src" | cut -c1-16)"
    if [ -x "$dir/chgo" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
        log "clickhouse-go $CHGO_VERSION test client already in $dir"
        return 0
    fi
    local go
    go="$(command -v go || true)"
    [ -z "$go" ] && [ -x /usr/local/go/bin/go ] && go=/usr/local/go/bin/go
    if [ -z "$go" ]; then
        warn "no Go toolchain; the clickhouse-go test will skip"
        if [ -n "${CI:-}" ] || [ "${NETOBS_REQUIRE_SERVICES:-0}" = 1 ]; then return 1; fi
        return 0
    fi
    mkdir -p "$dir"
    cp "$src" "$dir/main.go"
    log "building the clickhouse-go $CHGO_VERSION test client in $dir"
    if ! (cd "$dir" && { [ -f go.mod ] || "$go" mod init netobs.test/chgo >/dev/null 2>&1; } \
        && GOMODCACHE="$NETOBS_CACHE/go/mod" GOFLAGS=-mod=mod "$go" get "github.com/ClickHouse/clickhouse-go/v2@$CHGO_VERSION" \
        && GOMODCACHE="$NETOBS_CACHE/go/mod" GOFLAGS=-mod=mod "$go" build -o chgo . ) </dev/null; then
        warn "building the clickhouse-go test client failed; its test will skip"
        if [ -n "${CI:-}" ] || [ "${NETOBS_REQUIRE_SERVICES:-0}" = 1 ]; then return 1; fi
        return 0
    fi
    echo "$want" >"$stamp"
}

if [ "${NETOBS_SKIP_APT:-0}" = 1 ]; then log "skipping Debian packages (NETOBS_SKIP_APT=1)"; else install_apt; fi
if [ "${NETOBS_SKIP_KAFKA:-0}" = 1 ]; then log "skipping Kafka jars (NETOBS_SKIP_KAFKA=1)"; else install_kafka; fi
if [ "${NETOBS_SKIP_GOFLOW2:-0}" = 1 ]; then log "skipping goflow2 (NETOBS_SKIP_GOFLOW2=1)"; else install_goflow2; fi
if [ "${NETOBS_SKIP_DEPLOY:-0}" = 1 ]; then log "skipping deployment tools (NETOBS_SKIP_DEPLOY=1)"; else install_deploy_tools; fi
if [ "${NETOBS_SKIP_BROWSER:-0}" = 1 ]; then log "skipping playwright-core (NETOBS_SKIP_BROWSER=1)"; else install_browser_driver; fi
if [ "${NETOBS_SKIP_CHGO:-0}" = 1 ]; then log "skipping the clickhouse-go client (NETOBS_SKIP_CHGO=1)"; else install_chgo; fi
log "done"
