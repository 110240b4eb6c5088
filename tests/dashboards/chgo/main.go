// chgo runs SQL statements through clickhouse-go v2 over HTTP (the library the Grafana ClickHouse
// data source uses) and prints each result as one JSON line: {"columns": [...], "rows": [[...]]}
// or {"error": "..."}. Statements come on stdin as JSON lines ({"sql": "..."}).
//
// Built by scripts/install-services.sh in $NETOBS_CACHE/chgo (not vendored here).
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"math/big"
	"net"
	"os"
	"reflect"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
)

func value(v any) any {
	switch x := v.(type) {
	case time.Time:
		return float64(x.UnixNano()) / 1e9
	case *big.Int:
		f, _ := new(big.Float).SetInt(x).Float64()
		return f
	case net.IP:
		return x.String()
	case []byte:
		return string(x)
	}
	return v
}

func main() {
	addr := flag.String("addr", "127.0.0.1:8123", "host:port")
	path := flag.String("path", "/", "HTTP URL path")
	user := flag.String("user", "default", "user")
	flag.Parse()
	conn, err := clickhouse.Open(&clickhouse.Options{
		Addr:        []string{*addr},
		Protocol:    clickhouse.HTTP,
		HttpUrlPath: *path,
		Auth:        clickhouse.Auth{Username: *user, Password: os.Getenv("CHGO_PASSWORD")},
		DialTimeout: 10 * time.Second,
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	out := json.NewEncoder(os.Stdout)
	in := bufio.NewScanner(os.Stdin)
	in.Buffer(make([]byte, 1<<20), 1<<24)
	for in.Scan() {
		var req struct{ SQL string `json:"sql"` }
		if err := json.Unmarshal(in.Bytes(), &req); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		_ = out.Encode(run(conn, req.SQL))
	}
}

func run(conn clickhouse.Conn, sql string) map[string]any {
	rows, err := conn.Query(context.Background(), sql)
	if err != nil {
		return map[string]any{"error": err.Error()}
	}
	defer rows.Close()
	types := rows.ColumnTypes()
	result := [][]any{}
	for rows.Next() {
		ptrs := make([]any, len(types))
		for i, t := range types {
			ptrs[i] = reflect.New(t.ScanType()).Interface()
		}
		if err := rows.Scan(ptrs...); err != nil {
			return map[string]any{"error": err.Error()}
		}
		row := make([]any, len(ptrs))
		for i, p := range ptrs {
			row[i] = value(reflect.ValueOf(p).Elem().Interface())
		}
		result = append(result, row)
	}
	if err := rows.Err(); err != nil {
		return map[string]any{"error": err.Error()}
	}
	return map[string]any{"columns": rows.Columns(), "rows": result}
}
