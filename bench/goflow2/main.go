// Command goflow2-decode times goflow2's own decoders on a file of export datagrams, single
// core, as netobs's bench/bench_decode.py times netobs's: the peer figure behind the
// *.decode.vs_goflow2 ratios that bench/bench_collector.py prints.
//
// Input: a file of datagrams, each a 4-byte big-endian length then the payload (sFlow v5,
// IPFIX, NetFlow v9 or v5; several protocols may be mixed). Every round decodes all of them
// with fresh template and sampling state, as one collector socket would: goflow2's decoder
// (decoders/sflow, decoders/netflow, decoders/netflowlegacy) and then its protobuf producer
// (producer/proto, the FlowMessage goflow2 publishes), which is what netobs's decoding into
// columns corresponds to. Output: one JSON object with the records per round and the median
// rates of decoding alone and of decoding plus producing.
package main

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"sort"
	"syscall"
	"time"

	"github.com/netsampler/goflow2/v2/decoders/netflow"
	"github.com/netsampler/goflow2/v2/decoders/netflowlegacy"
	"github.com/netsampler/goflow2/v2/decoders/sflow"
	"github.com/netsampler/goflow2/v2/producer"
	protoproducer "github.com/netsampler/goflow2/v2/producer/proto"
)

type result struct {
	Datagrams      int     `json:"datagrams"`
	DecodedRecords int     `json:"decoded_records"`
	FlowMessages   int     `json:"flow_messages"`
	Errors         int     `json:"errors"`
	DecodeRate     float64 `json:"decode_records_per_s"`
	ProduceRate    float64 `json:"decode_produce_flows_per_s"`
	// The same per CPU second of the process (user + system, every thread: the GC's too),
	// the figure a busy machine distorts least.
	DecodeCPURate  float64 `json:"decode_records_per_cpu_s"`
	ProduceCPURate float64 `json:"decode_produce_flows_per_cpu_s"`
}

// cpuSeconds is the user + system time of this process so far.
func cpuSeconds() float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		panic(err)
	}
	return float64(ru.Utime.Nano()+ru.Stime.Nano()) / 1e9
}

func readDatagrams(path string) ([][]byte, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var out [][]byte
	for len(raw) >= 4 {
		n := int(binary.BigEndian.Uint32(raw))
		if 4+n > len(raw) {
			return nil, fmt.Errorf("%s: truncated datagram", path)
		}
		out = append(out, raw[4:4+n])
		raw = raw[4+n:]
	}
	return out, nil
}

// decodeOne decodes a datagram with goflow2's decoders; it returns the decoded packet and
// the number of flow records in it (sFlow flow samples, IPFIX/NetFlow data records).
func decodeOne(payload []byte, templates netflow.NetFlowTemplateSystem) (interface{}, int, error) {
	if len(payload) >= 4 && binary.BigEndian.Uint32(payload) == 5 {
		var p sflow.Packet
		if err := sflow.DecodeMessageVersion(bytes.NewBuffer(payload), &p); err != nil {
			return nil, 0, err
		}
		n := 0
		for _, s := range p.Samples {
			switch s.(type) {
			case sflow.FlowSample, sflow.ExpandedFlowSample:
				n++
			}
		}
		return &p, n, nil
	}
	if len(payload) < 2 {
		return nil, 0, fmt.Errorf("short datagram")
	}
	buf := bytes.NewBuffer(payload[2:])
	switch binary.BigEndian.Uint16(payload) {
	case 5:
		p := netflowlegacy.PacketNetFlowV5{Version: 5}
		if err := netflowlegacy.DecodeMessage(buf, &p); err != nil {
			return nil, 0, err
		}
		return &p, len(p.Records), nil
	case 9:
		p := netflow.NFv9Packet{Version: 9}
		if err := netflow.DecodeMessageNetFlow(buf, templates, &p); err != nil {
			return nil, 0, err
		}
		return &p, dataRecords(p.FlowSets), nil
	case 10:
		p := netflow.IPFIXPacket{Version: 10}
		if err := netflow.DecodeMessageIPFIX(buf, templates, &p); err != nil {
			return nil, 0, err
		}
		return &p, dataRecords(p.FlowSets), nil
	}
	return nil, 0, fmt.Errorf("unknown protocol")
}

func dataRecords(sets []interface{}) int {
	n := 0
	for _, s := range sets {
		if d, ok := s.(netflow.DataFlowSet); ok {
			n += len(d.Records)
		}
	}
	return n
}

func newProducer() producer.ProducerInterface {
	var cfg *protoproducer.ProducerConfig // goflow2's default mapping, as its command uses
	compiled, err := cfg.Compile()
	if err != nil {
		panic(err)
	}
	p, err := protoproducer.CreateProtoProducer(compiled, protoproducer.CreateSamplingSystem)
	if err != nil {
		panic(err)
	}
	return p
}

// round decodes every datagram once with fresh state; produce adds the protobuf producer.
func round(datagrams [][]byte, produce bool) (records, messages, errors int) {
	templates := netflow.CreateTemplateSystem()
	var prod producer.ProducerInterface
	if produce {
		prod = newProducer()
	}
	src := netip.MustParseAddrPort("10.0.0.1:4739")
	dst := netip.MustParseAddrPort("127.0.0.1:4739")
	for _, d := range datagrams {
		pkt, n, err := decodeOne(d, templates)
		if err != nil {
			errors++
			continue
		}
		records += n
		if prod == nil {
			continue
		}
		args := producer.ProduceArgs{Src: src, Dst: dst, SamplerAddress: src.Addr(), TimeReceived: time.Now()}
		msgs, err := prod.Produce(pkt, &args)
		if err != nil {
			errors++
		}
		messages += len(msgs)
		prod.Commit(msgs)
	}
	return records, messages, errors
}

func median(xs []float64) float64 {
	sort.Float64s(xs)
	return xs[len(xs)/2]
}

func main() {
	rounds := flag.Int("rounds", 5, "timed rounds per figure (the median is printed)")
	flag.Parse()
	if flag.NArg() != 1 {
		fmt.Fprintln(os.Stderr, "usage: goflow2-decode [-rounds N] DATAGRAMS_FILE")
		os.Exit(2)
	}
	datagrams, err := readDatagrams(flag.Arg(0))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	res := result{Datagrams: len(datagrams)}
	var decodeRates, produceRates, decodeCPU, produceCPU []float64
	for i := 0; i < *rounds; i++ {
		start, cpu := time.Now(), cpuSeconds()
		records, _, errors := round(datagrams, false)
		decodeRates = append(decodeRates, float64(records)/time.Since(start).Seconds())
		decodeCPU = append(decodeCPU, float64(records)/(cpuSeconds()-cpu))
		start, cpu = time.Now(), cpuSeconds()
		_, messages, _ := round(datagrams, true)
		produceRates = append(produceRates, float64(messages)/time.Since(start).Seconds())
		produceCPU = append(produceCPU, float64(messages)/(cpuSeconds()-cpu))
		res.DecodedRecords, res.FlowMessages, res.Errors = records, messages, errors
	}
	res.DecodeRate, res.ProduceRate = median(decodeRates), median(produceRates)
	res.DecodeCPURate, res.ProduceCPURate = median(decodeCPU), median(produceCPU)
	if err := json.NewEncoder(os.Stdout).Encode(res); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
