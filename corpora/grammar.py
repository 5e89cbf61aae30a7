"""A probabilistic, depth-bounded grammar of English-like sentences with exact next-word probabilities.

The grammar is a small context-free grammar whose recursion (relative clauses, prepositional
phrases) is capped at a fixed depth, so the language is regular and every parser configuration
is one of finitely many *states*.  A state is ``(topic, stack)``: a sentence-level latent topic
(it biases which nouns, verbs and adjectives are likely throughout the sentence) and the stack of
grammar symbols still to be produced, leftmost first, expanded until its top is a word category
(a pre-terminal) or the stack is empty (the sentence may end: the next event is ``</s>``).

Long-range structure that an n-gram model cannot see:

* number (singular/plural) and semantic-class agreement (people, animals, things, places)
  between a subject and its verb -- or predicate adjective -- across subject- and
  object-relative clauses, nested up to ``MAX_DEPTH`` levels, and across noun-attached
  prepositional phrases ("the dog that the cats near the house chase runs");
* in an object relative clause the verb prefers objects of the head noun's class;
* the latent topic, which shifts the Zipf rankings of content words for the whole sentence;
* "who" only introduces a relative clause about an animate noun.

Local structure: verbs prefer objects of one class ("feed" animals), adjectives prefer nouns of
one class, transitive verbs with inanimate subjects form a small separate set.

Sampling and exact probabilities share one machinery: ``_expand(stack)`` lists the reachable
top-terminal stacks with their probabilities, and ``next_distribution``/``sentence_logprob``
run the forward algorithm (a posterior over states, updated word by word), so ambiguity
("the", "my", "sheep", "they", "it", "clean", PP attachment, the topic) is handled exactly.

API: ``Grammar(seed)``, ``.vocab``, ``.sample_sentence(rng)``, ``.next_distribution(prefix)``,
``.sentence_logprob(words)``; the end-of-sentence token is ``EOS = "</s>"``.

Pure Python + NumPy; everything is deterministic given the seed.
"""
from __future__ import annotations

import math
from bisect import bisect_right
from itertools import accumulate

import numpy as np

EOS = "</s>"
MAX_DEPTH = 1          # levels of relative clauses (2 was tried first: see corpora/README.md)
N_TOPICS = 4
TOPIC_WEIGHT = 0.5     # weight of the topic-specific ranking in content-word distributions
ZIPF_S = 1.2           # Zipf exponent within a category

# Semantic classes of nouns: people, animals (animate), things, places (inanimate).
CLASSES = ("P", "A", "T", "L")
ANIMACY = {"P": "A", "A": "A", "T": "I", "L": "I"}
_NOUNS = {
    "P": "farmer teacher student child man woman girl boy doctor baker king queen soldier sailor "
         "pilot artist".split(),
    "A": "dog cat bird horse cow fox wolf mouse sheep fish monkey lion tiger rabbit duck goat".split(),
    "T": "book cup ball hat box key bell coin letter bottle lamp candle basket clock apple wheel "
         "stone flower".split(),
    "L": "house tree river road bridge garden tower wall village forest hill lake castle field "
         "school market".split(),
}
# Transitive verbs with an animate subject, by the class of object they prefer ("any": none).
_VT_A = {
    "P": "teach meet greet thank marry warn".split(),
    "A": "feed chase hunt ride pet tame".split(),
    "T": "carry throw kick fix drop hold".split(),
    "L": "visit build paint clean leave cross".split(),
    "any": "see like find want watch love hate remember".split(),
}
_VT_I = "cover hit block hide crush shade reach trap".split()   # inanimate subject, any object
_VI = {   # intransitive verbs by subject class
    "P": "laugh talk work smile cry dance sing".split(),
    "A": "run sleep jump swim eat play bark".split(),
    "T": "fall break roll shake float sink rattle".split(),
    "L": "glow shine burn crumble flood freeze stand".split(),
}
_ADJ_CLASS = {   # adjectives each class prefers (the rest of the adjectives remain possible)
    "P": "clever brave tired busy proud shy famous lonely kind".split(),
    "A": "wild hungry lazy gentle fierce furry sleepy fast".split(),
    "T": "red blue round broken empty heavy shiny cheap".split(),
    "L": "dark quiet tall warm cold huge muddy ancient".split(),
}
_ADJ_OTHER = "big small old young happy sad green strange clean dirty wet dry soft".split()  # also "ADJG"
_ADJ = [w for c in CLASSES for w in _ADJ_CLASS[c]] + _ADJ_OTHER
_ADV = "quickly slowly again often today together alone outside loudly quietly".split()
_PREP = "near behind under above beside with without inside past toward".split()
_NAMES = "john mary anna peter lucy tom emma paul sarah james".split()
_DET_SG = ["the", "this", "my", "every", "one", "each"]
_DET_PL = ["the", "these", "some", "my", "many", "those", "two", "all", "three", "our"]
_IRREGULAR = {"wolf": "wolves", "mouse": "mice", "sheep": "sheep", "fish": "fish", "man": "men",
              "woman": "women", "child": "children"}

# Rule probabilities (tuned so the true perplexity and sentence length fall in the target range).
P_NUM = {"sg": 0.55, "pl": 0.45}
P_CLASS = {"P": 0.3, "A": 0.3, "T": 0.2, "L": 0.2}       # subjects and generic objects
P_CLASS_PP = {"P": 0.15, "A": 0.15, "T": 0.25, "L": 0.45}  # objects of prepositions
P_PRONOUN = 0.08       # subject position is a pronoun
P_NAME = 0.15          # a singular NP of people is a proper name
P_RC = {0: 0.40, 1: 0.15}   # relative clause on an NP at depth d
P_NP_PP = {0: 0.10, 1: 0.05}  # noun-attached PP at depth d
P_SUBJ_RC = 0.45       # subject relative ("that chases ...") vs object relative ("that X chases")
P_OBJ_RC_MATCH = 0.6   # object relative: the verb prefers the head's class (else an "any" verb)
P_WHO = 0.5            # "who" instead of "that" for an animate head
P_ADJ = (0.62, 0.28, 0.10)    # no adjective, ADJ, ADJG ADJ ("the big furry dog")
P_ADJ_CLASS = 0.6      # adjective drawn from the noun class's preferred list
P_VP = {"A": (0.30, 0.50, 0.20), "I": (0.40, 0.25, 0.35)}  # intransitive, transitive, copula
P_VT_CLASS = {"any": 0.4, "P": 0.15, "A": 0.15, "T": 0.15, "L": 0.15}  # verb's object preference
P_OBJ_MATCH = 0.85     # object class equals the verb's preferred class
P_ADV = 0.25           # adverb after an intransitive verb
P_VP_PP = {0: 0.25, 1: 0.12, 2: 0.05}  # VP-final PP at depth d

TERMINALS = frozenset(["DET", "N", "ADJ", "ADJG", "VI", "VT", "COP", "REL", "PREP", "NAME", "PRON", "ADV"])


def _inflect(word: str) -> str:
    """Regular -s/-es/-ies inflection (noun plural, verb 3rd person singular)."""
    if word in _IRREGULAR:
        return _IRREGULAR[word]
    if word.endswith(("s", "sh", "ch", "x", "z")):
        return word + "es"
    if word.endswith("y") and word[-2] not in "aeiou":
        return word[:-1] + "ies"
    return word + "s"


def _zipf(n: int) -> np.ndarray:
    p = 1.0 / np.arange(1, n + 1) ** ZIPF_S
    return p / p.sum()


class Grammar:
    """The grammar, with content-word rankings drawn from ``seed``.

    ``vocab`` lists every word the grammar can produce (sorted, without ``</s>``).
    """

    def __init__(self, seed: int = 1):
        self.seed = int(seed)
        rng = np.random.default_rng(self.seed)
        self.topic_prior = np.full(N_TOPICS, 1.0 / N_TOPICS)
        lists: dict[tuple, list[str]] = {("ADJ",): _ADJ, ("ADJG",): _ADJ_OTHER, ("VT", "I", "any"): _VT_I}
        for c in CLASSES:
            lists[("N", c)], lists[("VI", c)], lists[("ADJ", c)] = _NOUNS[c], _VI[c], _ADJ_CLASS[c]
        for vc, words in _VT_A.items():
            lists[("VT", "A", vc)] = words
        self._lemmas = lists
        self._lemma_probs: dict[tuple, list[np.ndarray]] = {}
        for name, words in lists.items():   # a base ranking mixed with one ranking per topic
            n = len(words)
            base = np.zeros(n)
            base[rng.permutation(n)] = _zipf(n)
            per_topic = []
            for _ in range(N_TOPICS):
                top = np.zeros(n)
                top[rng.permutation(n)] = _zipf(n)
                per_topic.append((1 - TOPIC_WEIGHT) * base + TOPIC_WEIGHT * top)
            self._lemma_probs[name] = per_topic
        self._fixed = {name: (list(words), _zipf(len(words))) for name, words in
                       (("ADV", _ADV), ("PREP", _PREP), ("NAME", _NAMES), ("DET_sg", _DET_SG),
                        ("DET_pl", _DET_PL))}
        self._emit_cache: dict[tuple, dict[str, float]] = {}
        self._emit_cum: dict[tuple, tuple[list[str], list[float]]] = {}
        self._rule_cache: dict[tuple, list[tuple[float, tuple]]] = {}
        self._expand_cache: dict[tuple, list[tuple[float, tuple]]] = {}
        self._expand_cum: dict[tuple, tuple[list[tuple], list[float]]] = {}
        words: set[str] = set()
        for term in self._all_terminals():
            for t in range(N_TOPICS):
                words.update(self.emission(term, t))
        self.vocab: list[str] = sorted(words)

    # ----------------------------------------------------------------- word emission
    @staticmethod
    def _all_terminals():
        for n in ("sg", "pl"):
            yield from (("DET", n), ("COP", n), ("VT", n, "I", "any"))
            for c in CLASSES:
                yield from (("N", n, c), ("VI", n, c), ("PRON", n, c))
            for vc in _VT_A:
                yield ("VT", n, "A", vc)
        yield from (("REL", "A"), ("REL", "I"), ("ADV",), ("PREP",), ("NAME",), ("ADJG",))
        yield from (("ADJ", c) for c in CLASSES)

    def emission(self, term: tuple, topic: int) -> dict[str, float]:
        """Distribution of the word produced by pre-terminal ``term`` under ``topic``."""
        key = (term, topic)
        if key in self._emit_cache:
            return self._emit_cache[key]
        kind = term[0]
        if kind in ("N", "VI", "VT"):
            name = (kind,) + term[2:]
            words = self._lemmas[name]
            inflect = (term[1] == "pl") if kind == "N" else (term[1] == "sg")
            words = [_inflect(w) if inflect else w for w in words]
            probs = self._lemma_probs[name][topic]
        elif kind == "ADJ":      # the class's preferred adjectives, or any adjective
            own = self._lemmas[("ADJ", term[1])]
            words = own + _ADJ
            probs = np.concatenate([P_ADJ_CLASS * self._lemma_probs[("ADJ", term[1])][topic],
                                    (1 - P_ADJ_CLASS) * self._lemma_probs[("ADJ",)][topic]])
        elif kind == "ADJG":     # general adjective before a class adjective
            words, probs = _ADJ_OTHER, self._lemma_probs[("ADJG",)][topic]
        elif kind == "DET":
            words, probs = self._fixed["DET_" + term[1]]
        elif kind in ("ADV", "PREP", "NAME"):
            words, probs = self._fixed[kind]
        elif kind == "COP":
            words, probs = ["is" if term[1] == "sg" else "are"], [1.0]
        elif kind == "PRON":
            words = ["they"] if term[1] == "pl" else (["he", "she"] if term[2] == "P" else ["it"])
            probs = [1.0 / len(words)] * len(words)
        elif kind == "REL":
            words, probs = (["who", "that"], [P_WHO, 1 - P_WHO]) if term[1] == "A" else (["that"], [1.0])
        else:
            raise ValueError(f"unknown terminal {term}")
        dist: dict[str, float] = {}
        for w, p in zip(words, probs):
            dist[w] = dist.get(w, 0.0) + float(p)
        self._emit_cache[key] = dist
        self._emit_cum[key] = (list(dist), list(accumulate(dist.values())))
        return dist

    # ----------------------------------------------------------------- rules
    @staticmethod
    def _objects(vc: str) -> list[tuple[float, str]]:
        """Object class distribution for a verb preferring class ``vc`` ("any": the prior)."""
        if vc == "any":
            return list((p, c) for c, p in P_CLASS.items())
        return [((P_OBJ_MATCH if c == vc else 0.0) + (1 - P_OBJ_MATCH) * p, c) for c, p in P_CLASS.items()]

    def rules(self, sym: tuple) -> list[tuple[float, tuple]]:
        """The productions ``[(prob, rhs_symbols), ...]`` of nonterminal ``sym``."""
        if sym in self._rule_cache:
            return self._rule_cache[sym]
        kind = sym[0]
        out: list[tuple[float, tuple]] = []
        if kind == "S":
            for n, pn in P_NUM.items():
                for c, pc in P_CLASS.items():
                    out.append((pn * pc, (("SUBJ", n, c, 0), ("VP", n, c, 0))))
        elif kind == "SUBJ":          # subject position: pronoun or full NP
            _, n, c, d = sym
            out = [(P_PRONOUN, (("PRON", n, c),)), (1 - P_PRONOUN, (("NP", n, c, d),))]
        elif kind == "NP":            # NP(number, class, depth)
            _, n, c, d = sym
            p_name = P_NAME if (n, c) == ("sg", "P") else 0.0
            if p_name:
                out.append((p_name, (("NAME",), ("MOD", n, c, d))))
            out.append((1 - p_name, (("DET", n), ("ADJS", c), ("N", n, c), ("MOD", n, c, d))))
        elif kind == "ADJS":
            a = ("ADJ", sym[1])
            out = [(P_ADJ[0], ()), (P_ADJ[1], (a,)), (P_ADJ[2], (("ADJG",), a))]
        elif kind == "MOD":           # optional relative clause or PP after a noun
            _, n, c, d = sym
            p_rc = P_RC.get(d, 0.0) if d < MAX_DEPTH else 0.0
            p_pp = P_NP_PP.get(d, 0.0) if d < MAX_DEPTH else 0.0
            out = [(1 - p_rc - p_pp, ())]
            if p_rc:
                out.append((p_rc, (("RC", n, c, d + 1),)))
            if p_pp:
                out.append((p_pp, (("PP",),)))
        elif kind == "PP":            # preposition + simple NP (no further modifiers)
            for m, pm in P_NUM.items():
                for c, pc in P_CLASS_PP.items():
                    out.append((pm * pc, (("PREP",), ("NP", m, c, MAX_DEPTH))))
        elif kind == "RC":            # relative clause about a head of number n, class c
            _, n, c, d = sym
            rel = ("REL", ANIMACY[c])
            out.append((P_SUBJ_RC, (rel, ("VP", n, c, d))))
            for m, pm in P_NUM.items():
                for c2, pc in P_CLASS.items():
                    p = (1 - P_SUBJ_RC) * pm * pc
                    if ANIMACY[c2] == "I":
                        out.append((p, (rel, ("SUBJ", m, c2, d), ("VT", m, "I", "any"))))
                        continue
                    for vc, pv in ((c, P_OBJ_RC_MATCH), ("any", 1 - P_OBJ_RC_MATCH)):
                        out.append((p * pv, (rel, ("SUBJ", m, c2, d), ("VT", m, "A", vc))))
        elif kind == "VP":            # VP(number, class of the subject, depth)
            _, n, c, d = sym
            a = ANIMACY[c]
            p_vi, p_vt, p_cop = P_VP[a]
            p_pp = P_VP_PP.get(d, 0.0)
            verbs = list(P_VT_CLASS.items()) if a == "A" else [("any", 1.0)]
            for pt, tail in [(1 - p_pp, ()), (p_pp, (("PP",),))]:
                out.append((p_vi * (1 - P_ADV) * pt, (("VI", n, c),) + tail))
                out.append((p_vi * P_ADV * pt, (("VI", n, c), ("ADV",)) + tail))
                for vc, pv in verbs:
                    for m, pm in P_NUM.items():
                        for po, c2 in self._objects(vc):
                            out.append((p_vt * pv * pm * po * pt,
                                        (("VT", n, a, vc), ("NP", m, c2, d)) + tail))
                out.append((p_cop * pt, (("COP", n), ("ADJ", c)) + tail))
        else:
            raise ValueError(f"unknown nonterminal {sym}")
        out = [(p, rhs) for p, rhs in out if p > 0]
        assert abs(sum(p for p, _ in out) - 1.0) < 1e-12, sym
        self._rule_cache[sym] = out
        return out

    def _expand(self, stack: tuple) -> list[tuple[float, tuple]]:
        """Rewrite the leftmost nonterminals until the top is a terminal (or the stack is empty)."""
        cached = self._expand_cache.get(stack)
        if cached is not None:
            return cached
        if not stack or stack[0][0] in TERMINALS:
            out = [(1.0, stack)]
        else:
            acc: dict[tuple, float] = {}
            rest = stack[1:]
            for p, rhs in self.rules(stack[0]):
                for q, s2 in self._expand(rhs + rest):
                    acc[s2] = acc.get(s2, 0.0) + p * q
            out = [(p, s) for s, p in acc.items()]
        self._expand_cache[stack] = out
        self._expand_cum[stack] = ([s for _, s in out], list(accumulate(p for p, _ in out)))
        return out

    # ----------------------------------------------------------------- sampling
    @staticmethod
    def _draw(rng: np.random.Generator, items: list, cum: list[float]):
        i = bisect_right(cum, rng.random() * cum[-1])
        return items[min(i, len(items) - 1)]

    def sample_sentence(self, rng: np.random.Generator) -> list[str]:
        """Draw one sentence (list of words, without ``</s>``) using ``rng``."""
        topic = int(self._draw(rng, list(range(N_TOPICS)), list(accumulate(self.topic_prior))))
        self._expand((("S",),))
        stack = self._draw(rng, *self._expand_cum[(("S",),)])
        words: list[str] = []
        while stack:
            self.emission(stack[0], topic)
            words.append(self._draw(rng, *self._emit_cum[(stack[0], topic)]))
            self._expand(stack[1:])
            stack = self._draw(rng, *self._expand_cum[stack[1:]])
        return words

    # ----------------------------------------------------------------- exact probabilities
    def _initial_belief(self) -> dict[tuple, float]:
        belief: dict[tuple, float] = {}
        for t in range(N_TOPICS):
            for p, s in self._expand((("S",),)):
                belief[(t, s)] = belief.get((t, s), 0.0) + float(self.topic_prior[t]) * p
        return belief

    def _step(self, belief: dict[tuple, float], word: str) -> tuple[float, dict[tuple, float]]:
        """Forward update: returns P(word | history) and the posterior over states after it."""
        new: dict[tuple, float] = {}
        for (t, stack), b in belief.items():
            if not stack:
                continue
            p = self.emission(stack[0], t).get(word)
            if not p:
                continue
            for q, s2 in self._expand(stack[1:]):
                key = (t, s2)
                new[key] = new.get(key, 0.0) + b * p * q
        total = sum(new.values())
        if total > 0:
            new = {k: v / total for k, v in new.items()}
        return total, new

    def _belief_after(self, prefix_words) -> dict[tuple, float]:
        belief = self._initial_belief()
        for i, w in enumerate(prefix_words):
            p, belief = self._step(belief, w)
            if p <= 0:
                raise ValueError(f"prefix has probability zero at word {i} ({w!r})")
        return belief

    def next_distribution(self, prefix_words) -> dict[str, float]:
        """Exact ``P(next word | prefix)`` over the vocabulary and ``</s>`` (zero-probability words omitted)."""
        dist: dict[str, float] = {}
        for (t, stack), b in self._belief_after(prefix_words).items():
            if not stack:
                dist[EOS] = dist.get(EOS, 0.0) + b
                continue
            for w, p in self.emission(stack[0], t).items():
                dist[w] = dist.get(w, 0.0) + b * p
        return dist

    def sentence_logprob(self, words) -> list[float]:
        """Natural-log probabilities of each word and of the final ``</s>``, given the preceding words."""
        belief = self._initial_belief()
        out: list[float] = []
        for w in words:
            p, belief = self._step(belief, w)
            out.append(math.log(p) if p > 0 else -math.inf)
            if p <= 0:
                return out + [-math.inf] * (len(words) - len(out) + 1)
        p_end = sum(b for (t, s), b in belief.items() if not s)
        out.append(math.log(p_end) if p_end > 0 else -math.inf)
        return out
