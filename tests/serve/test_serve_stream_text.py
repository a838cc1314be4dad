"""serve.TextStream: what a streamed choice may send as tokens arrive (stop strings across chunks, held-back
stop prefixes, characters split over tokens), and that all of it at once is the non-streamed choice."""
from ieta_jax import serve


class Letters:
    """Token i is the letter chr(ord('a') + i); token 30 and 31 are the two UTF-8 bytes of 'é' (one alone is
    undecodable, as with byte-level BPE)."""

    def decode(self, ids, skip_special_tokens=True):
        out, i = "", 0
        while i < len(ids):
            if ids[i] == 30:
                out += "é" if i + 1 < len(ids) and ids[i + 1] == 31 else "\ufffd"
                i += 2 if i + 1 < len(ids) and ids[i + 1] == 31 else 1
                continue
            out += chr(ord("a") + ids[i])
            i += 1
        return out


def _row(tokens, done=False, eos=False):
    return serve.Sampled(list(tokens), [-0.5 - t for t in range(len(tokens))], eos, done)


def _feed(stop, chunks, eos=False):
    """Feeds growing prefixes (one per chunk); returns the text sent after each update and the stream."""
    stream, tokens, sent = serve.TextStream(Letters(), stop), [], []
    for k, chunk in enumerate(chunks):
        tokens += chunk
        last = k == len(chunks) - 1
        sent.append("".join(p.text for p in stream.update(_row(tokens, done=last, eos=eos and last))))
    return sent, stream


def test_stop_string_split_over_chunks_is_never_sent():
    # "cd" is the stop: "c" ends chunk 1, so it is held back until chunk 2 shows whether "d" follows
    sent, stream = _feed(["cd"], [[0, 1, 2], [3, 4], [5]])
    assert sent == ["ab", "", ""] and stream.finish_reason == "stop" and stream.completion_tokens == 2
    assert serve.make_choice(Letters(), _row([0, 1, 2, 3, 4, 5], done=True), ["cd"]).text == "ab"


def test_a_held_back_prefix_that_is_not_a_stop_is_released():
    sent, stream = _feed(["cx"], [[0, 1, 2], [3, 4], [5]], eos=True)
    assert sent == ["ab", "cde", "f"] and stream.finish_reason == "stop"   # EOS ended it
    assert stream.completion_tokens == 7                                     # six tokens + EOS
    sent, stream = _feed(["cx"], [[0, 1, 2], [3]])
    assert sent == ["ab", "cd"] and stream.finish_reason == "length"


def test_stop_inside_a_token_cuts_that_token_and_pieces_match_the_whole():
    sent, _ = _feed(["b"], [[0], [1, 2]])
    assert sent == ["a", ""]
    chunked, _ = _feed([], [[0, 30], [31, 1], [2]])
    assert chunked == ["a", "éb", "c"]               # 'é' waits for its second byte
    whole = serve.make_choice(Letters(), _row([0, 30, 31, 1, 2], done=True), [])
    assert [p.text for p in whole.pieces] == ["a", "", "é", "b", "c"] and whole.text == "".join(chunked)
    assert [p.offset for p in whole.pieces] == [0, 1, 1, 2, 3]
