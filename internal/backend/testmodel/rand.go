package testmodel

import (
	"crypto/sha256"
	"encoding/binary"
)

// digest is a SHA-256 sum that seeds the deterministic choices for one
// request.
type digest [sha256.Size]byte

// contentDigest hashes the request body alone, so that the same params give
// the same response in any batch.
func contentDigest(params []byte) digest {
	return sha256.Sum256(params)
}

// requestDigest hashes one request's identity: its batch, its custom_id and
// its body. Message ids and fault draws use it, so identical bodies in one
// batch still get distinct ids and independent faults.
func requestDigest(content digest, batchID, customID string) digest {
	h := sha256.New()
	h.Write(content[:])
	h.Write([]byte(batchID))
	h.Write([]byte{0})
	h.Write([]byte(customID))

	var d digest
	h.Sum(d[:0])
	return d
}

// word returns the i-th 64-bit word of d.
func (d digest) word(i int) uint64 {
	return binary.LittleEndian.Uint64(d[8*i:])
}

// rng is a splitmix64 generator: tiny, fast and fully determined by its seed.
// It is not safe for concurrent use.
type rng struct {
	state uint64
}

func newRNG(seed uint64) *rng {
	return &rng{state: seed}
}

func (r *rng) next() uint64 {
	r.state += 0x9e3779b97f4a7c15
	return mix(r.state)
}

// intn returns a number in [0, n). It returns 0 when n <= 0.
func (r *rng) intn(n int) int {
	if n <= 0 {
		return 0
	}
	return int(r.next() % uint64(n))
}

// float returns a number in [0, 1).
func (r *rng) float() float64 {
	return unitFloat(r.next())
}

// mix is the splitmix64 finaliser; it spreads every input bit over the
// output.
func mix(z uint64) uint64 {
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb
	return z ^ (z >> 31)
}

// unitFloat maps x to [0, 1) using its top 53 bits.
func unitFloat(x uint64) float64 {
	return float64(x>>11) / (1 << 53)
}

const base62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

// appendID appends n base62 characters derived from seed, for ids such as
// "msg_…" and "toolu_…".
func appendID(dst []byte, seed uint64, n int) []byte {
	r := newRNG(seed)
	for range n {
		dst = append(dst, base62[r.next()%uint64(len(base62))])
	}
	return dst
}
