package scep

import (
	"bytes"
	"fmt"
)

// Some clients (BouncyCastle-based ones among them) send PKIMessages in BER with
// indefinite lengths and chunked (constructed) OCTET STRINGs. berToDER rewrites such an
// encoding into DER lengths so the strict parser can read it. It is bounded: nesting is
// limited to maxDepthBER, every length is checked against what remains, and the output
// is never longer than the input but by berGrowth: an indefinite length takes three
// bytes (0x80 and the end-of-contents), its definite form four or five once the
// contents reach 64 KiB (X.690 §8.1.3.5).

// berGrowth bounds how much longer than its input berToDER's output can be: two bytes for
// each indefinite length whose contents reach 64 KiB, of which each level of nesting
// holds at most one per 64 KiB of input.
func berGrowth(in int) int { return 2 * (maxDepthBER + 1) * (in>>16 + 1) }

// berToDER converts indefinite lengths to definite ones and flattens constructed
// universal OCTET STRINGs. Tags and primitive contents are copied unchanged.
func berToDER(in []byte) ([]byte, error) {
	var out bytes.Buffer
	rest, err := berElement(&out, in, 0)
	if err != nil {
		return nil, err
	}
	if len(rest) != 0 {
		return nil, fmt.Errorf("%w: trailing data", ErrMalformed)
	}
	return out.Bytes(), nil
}

// berHeader reads one identifier and length. length is -1 for indefinite.
func berHeader(in []byte) (tag []byte, constructed bool, length int, rest []byte, err error) {
	if len(in) < 2 {
		return nil, false, 0, nil, fmt.Errorf("%w: truncated", ErrMalformed)
	}
	i := 1
	if in[0]&0x1f == 0x1f { // high tag number
		for {
			if i >= len(in) || i > 5 {
				return nil, false, 0, nil, fmt.Errorf("%w: bad tag", ErrMalformed)
			}
			b := in[i]
			i++
			if b&0x80 == 0 {
				break
			}
		}
	}
	tag = in[:i]
	constructed = in[0]&0x20 != 0
	if i >= len(in) {
		return nil, false, 0, nil, fmt.Errorf("%w: truncated", ErrMalformed)
	}
	l := in[i]
	i++
	switch {
	case l < 0x80:
		length = int(l)
	case l == 0x80:
		if !constructed {
			return nil, false, 0, nil, fmt.Errorf("%w: indefinite primitive", ErrMalformed)
		}
		length = -1
	default:
		n := int(l & 0x7f)
		if n > 4 || i+n > len(in) {
			return nil, false, 0, nil, fmt.Errorf("%w: bad length", ErrMalformed)
		}
		for _, b := range in[i : i+n] {
			length = length<<8 | int(b)
		}
		i += n
	}
	rest = in[i:]
	if length > len(rest) {
		return nil, false, 0, nil, fmt.Errorf("%w: length beyond input", ErrMalformed)
	}
	return tag, constructed, length, rest, nil
}

// berElement converts one element from in, appends it to out and returns what follows.
func berElement(out *bytes.Buffer, in []byte, depth int) ([]byte, error) {
	if depth > maxDepthBER {
		return nil, fmt.Errorf("%w: nesting too deep", ErrMalformed)
	}
	tag, constructed, length, rest, err := berHeader(in)
	if err != nil {
		return nil, err
	}
	if !constructed {
		out.Write(tag)
		writeLength(out, length)
		out.Write(rest[:length])
		return rest[length:], nil
	}
	var content bytes.Buffer
	var after []byte
	if length >= 0 {
		body := rest[:length]
		for len(body) > 0 {
			if body, err = berElement(&content, body, depth+1); err != nil {
				return nil, err
			}
		}
		after = rest[length:]
	} else {
		body := rest
		for {
			if len(body) >= 2 && body[0] == 0 && body[1] == 0 {
				after = body[2:]
				break
			}
			if len(body) == 0 {
				return nil, fmt.Errorf("%w: missing end-of-contents", ErrMalformed)
			}
			if body, err = berElement(&content, body, depth+1); err != nil {
				return nil, err
			}
		}
	}
	if len(tag) == 1 && tag[0] == 0x24 { // constructed OCTET STRING: join the chunks
		joined, err := joinOctetChunks(content.Bytes())
		if err != nil {
			return nil, err
		}
		out.WriteByte(0x04)
		writeLength(out, len(joined))
		out.Write(joined)
		return after, nil
	}
	out.Write(tag)
	writeLength(out, content.Len())
	out.Write(content.Bytes())
	return after, nil
}

// joinOctetChunks concatenates a run of already-normalized primitive OCTET STRINGs.
func joinOctetChunks(in []byte) ([]byte, error) {
	var out []byte
	for len(in) > 0 {
		tag, _, length, rest, err := berHeader(in)
		if err != nil || len(tag) != 1 || tag[0] != 0x04 {
			return nil, fmt.Errorf("%w: bad OCTET STRING chunk", ErrMalformed)
		}
		out = append(out, rest[:length]...)
		in = rest[length:]
	}
	return out, nil
}

func writeLength(out *bytes.Buffer, n int) {
	switch {
	case n < 0x80:
		out.WriteByte(byte(n))
	case n < 0x100:
		out.Write([]byte{0x81, byte(n)})
	case n < 0x10000:
		out.Write([]byte{0x82, byte(n >> 8), byte(n)})
	case n < 0x1000000:
		out.Write([]byte{0x83, byte(n >> 16), byte(n >> 8), byte(n)})
	default:
		out.Write([]byte{0x84, byte(n >> 24), byte(n >> 16), byte(n >> 8), byte(n)})
	}
}
