"""Deterministic synthetic dataset shared by the three upstream emulators.

Why: the emulators must agree with each other (the phone C2S hands out is the one Diretrix
knows, the CPF Diretrix answers is the one the Work API has a dossier for) and with
``data/leads.csv``, run after run. Everything derives from one integer seed through
``random.Random`` (whose integer seeding and ``getrandbits``/``random`` streams are stable
across CPython versions), and only synthetic data is produced: CPFs are random numbers with
valid mod-11 check digits, names are drawn from common pt-BR name lists.

People and leads are small slotted records built eagerly (~50 ms for 5,000 leads); the big
Work-format dossiers (docs/emulators.md#work-api) are built on demand from a per-person seed, so memory
stays low and any dossier is reproducible on its own.

Run ``python -m service.emulators.dataset --out data/leads.csv`` to write the lead list.
"""

from __future__ import annotations

import argparse
import csv
import functools
import io
import random
import sys
import unicodedata
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

DEFAULT_SEED = 42
DEFAULT_LEADS = 5_000

# Scenario names are part of the contract (data/leads.csv, brief). The mix is mostly
# successful enrichments (75 %), with every failure path well represented.
SCENARIO_MIX: dict[str, float] = {
    "same_person": 0.40,
    "different_people": 0.10,
    "phone_only": 0.15,
    "email_only": 0.10,
    "not_found": 0.10,
    "work_error": 0.07,
    "send_error": 0.08,
}
SCENARIOS: tuple[str, ...] = tuple(SCENARIO_MIX)

# C2S returns timestamps with a -03:00 offset (docs/emulators.md#c2s).
BRT = timezone(timedelta(hours=-3))


def _words(text: str) -> tuple[str, ...]:
    return tuple(text.split())


# --- name and place tables (common pt-BR names; no real person) --------------------------
MALE_NAMES = _words(
    "JOSE JOAO ANTONIO FRANCISCO CARLOS PAULO PEDRO LUCAS LUIZ MARCOS LUIS GABRIEL RAFAEL "
    "DANIEL MARCELO BRUNO EDUARDO FELIPE RAIMUNDO RODRIGO MANOEL MATEUS ANDRE FERNANDO FABIO "
    "LEONARDO GUSTAVO GUILHERME LEANDRO TIAGO ANDERSON RICARDO MARCIO JORGE SEBASTIAO ALEXANDRE "
    "ROBERTO EDSON DIEGO VITOR SERGIO CLAUDIO MATHEUS THIAGO GERALDO ADRIANO LUCIANO JULIO"
)
FEMALE_NAMES = _words(
    "MARIA ANA FRANCISCA ANTONIA ADRIANA JULIANA MARCIA FERNANDA PATRICIA ALINE SANDRA "
    "CAMILA AMANDA BRUNA JESSICA LETICIA JULIA LUCIANA VANESSA MARIANA GABRIELA VERA VITORIA "
    "LARISSA CLAUDIA BEATRIZ LUANA RITA SONIA RENATA ELIANE JOSEFA SIMONE NATALIA CRISTIANE "
    "CARLA DEBORA ROSANGELA JAQUELINE ROSA DANIELA APARECIDA MARLENE TEREZINHA RAIMUNDA ANDREA"
)
SURNAMES = _words(
    "SILVA SANTOS OLIVEIRA SOUZA RODRIGUES FERREIRA ALVES PEREIRA LIMA GOMES COSTA RIBEIRO "
    "MARTINS CARVALHO ALMEIDA LOPES SOARES FERNANDES VIEIRA BARBOSA ROCHA DIAS NASCIMENTO "
    "ANDRADE MOREIRA NUNES MARQUES MACHADO MENDES FREITAS CARDOSO RAMOS GONCALVES SANTANA "
    "TEIXEIRA ARAUJO PINTO CAVALCANTI MONTEIRO MOURA CORREIA CAMPOS BATISTA CASTRO MELO"
)
# (DDD, city, UF, neighbourhoods)
CITIES: tuple[tuple[str, str, str, tuple[str, ...]], ...] = (
    ("11", "SAO PAULO", "SP", ("PINHEIROS", "MOEMA", "TATUAPE", "SANTANA", "VILA MARIANA")),
    ("11", "SAO PAULO", "SP", ("JARDINS", "PERDIZES", "BROOKLIN", "MOOCA", "LAPA")),
    ("21", "RIO DE JANEIRO", "RJ", ("COPACABANA", "TIJUCA", "BOTAFOGO", "BARRA DA TIJUCA")),
    ("31", "BELO HORIZONTE", "MG", ("SAVASSI", "PAMPULHA", "BURITIS", "FUNCIONARIOS")),
    ("41", "CURITIBA", "PR", ("BATEL", "AGUA VERDE", "BIGORRILHO", "CABRAL")),
    ("51", "PORTO ALEGRE", "RS", ("MOINHOS DE VENTO", "PETROPOLIS", "MENINO DEUS")),
    ("61", "BRASILIA", "DF", ("ASA SUL", "ASA NORTE", "LAGO SUL", "SUDOESTE")),
    ("71", "SALVADOR", "BA", ("BARRA", "PITUBA", "RIO VERMELHO", "GRACA")),
    ("81", "RECIFE", "PE", ("BOA VIAGEM", "ESPINHEIRO", "CASA FORTE", "GRACAS")),
    ("85", "FORTALEZA", "CE", ("ALDEOTA", "MEIRELES", "COCO", "FATIMA")),
    ("19", "CAMPINAS", "SP", ("CAMBUI", "TAQUARAL", "BARAO GERALDO")),
    ("48", "FLORIANOPOLIS", "SC", ("CENTRO", "TRINDADE", "JURERE", "CAMPECHE")),
)
STREETS = (
    ("R", "DAS FLORES"),
    ("R", "AUGUSTA"),
    ("AV", "BRASIL"),
    ("R", "SETE DE SETEMBRO"),
    ("AV", "PAULISTA"),
    ("R", "TIRADENTES"),
    ("R", "DOM PEDRO II"),
    ("AV", "SANTOS DUMONT"),
    ("R", "DAS PALMEIRAS"),
    ("AL", "DOS ANJOS"),
    ("R", "XV DE NOVEMBRO"),
    ("AV", "GETULIO VARGAS"),
)
EMAIL_DOMAINS = ("gmail.com", "hotmail.com", "outlook.com", "yahoo.com.br", "uol.com.br")
OPERATORS = ("VIVO", "CLARO", "TIM", "OI")
PRIORITIES = ("MUITO ALTA", "ALTA", "MEDIA", "BAIXA", "MUITO BAIXA")
QUALITIES = ("OTIMO", "BOM", "POTENCIALMENTE BOM")
EDUCATION = ("ENSINO MEDIO COMPLETO", "ENSINO SUPERIOR COMPLETO", "POS-GRADUACAO")
MARITAL = ("SOLTEIRO(A)", "CASADO(A)", "DIVORCIADO(A)", "VIUVO(A)")
COMPANY_RELATIONS = (("QSA", "SOCIO"), ("QSA", "SOCIO-ADMINISTRADOR"), ("REPRESENTANTELEGAL", ""))
# Purchasing-power bands; the text shape "De R$ 7018 até R$ 15000" is the Work API's (docs/emulators.md#work-api).
POWER_BANDS: tuple[tuple[float, float | None, str, str], ...] = (
    (0, 1320, "1", "MUITO BAIXO"),
    (1320, 3000, "3", "BAIXO"),
    (3000, 7018, "5", "MEDIO"),
    (7018, 15000, "6", "ALTO"),
    (15000, 30000, "8", "MUITO ALTO"),
    (30000, None, "10", "ALTISSIMO"),
)
SEED_STRIDE = 1_000_003  # per-person seeds: seed * stride + index, distinct for any index


# --- document numbers -----------------------------------------------------------------------
def cpf_check_digits(base9: str) -> str:
    """The two mod-11 check digits of a 9-digit CPF base (Receita Federal algorithm)."""
    digits = [int(c) for c in base9]
    for weight_start in (10, 11):
        total = sum(d * w for d, w in zip(digits, range(weight_start, 1, -1), strict=False))
        rest = total % 11
        digits.append(0 if rest < 2 else 11 - rest)
    return f"{digits[-2]}{digits[-1]}"


def is_valid_cpf(cpf: str) -> bool:
    """True for 11 digits, not all equal, with correct check digits."""
    return (
        len(cpf) == 11
        and cpf.isdigit()
        and len(set(cpf)) > 1
        and cpf_check_digits(cpf[:9]) == cpf[9:]
    )


def cnpj_check_digits(base12: str) -> str:
    """The two mod-11 check digits of a 12-digit CNPJ base."""
    digits = [int(c) for c in base12]
    for weights in ((5, 4, 3, 2, 9, 8, 7, 6, 5, 4, 3, 2), (6, 5, 4, 3, 2, 9, 8, 7, 6, 5, 4, 3, 2)):
        rest = sum(d * w for d, w in zip(digits, weights, strict=True)) % 11
        digits.append(0 if rest < 2 else 11 - rest)
    return f"{digits[-2]}{digits[-1]}"


def _ascii_lower(text: str) -> str:
    return unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode().lower()


# --- records --------------------------------------------------------------------------------
@dataclass(slots=True, frozen=True)
class Person:
    """A synthetic person known to Diretrix and to the Work API."""

    index: int
    cpf: str
    name: str
    sex: str  # "M" | "F"
    birth_date: str  # DD/MM/YYYY
    mother: str
    phone: str  # national mobile: DDD + 9 digits (11 digits)
    email: str
    city: int  # index into CITIES
    work_fault: str | None = None  # None | "not_found" | "error" (work_error scenario)


@dataclass(slots=True, frozen=True)
class Lead:
    """A C2S lead; ``phone`` is national (no 55), ``None`` fields are absent from the CRM."""

    id: str
    internal_id: int
    scenario: str
    name: str
    phone: str | None
    email: str | None
    phone_person: int | None  # Person.index Diretrix resolves the phone to
    email_person: int | None  # Person.index Diretrix resolves the email to
    created_at: str
    city: int


class Dataset:
    """People, leads and the lookup indexes the emulators answer from."""

    def __init__(self, seed: int, people: list[Person], leads: list[Lead]) -> None:
        self.seed = seed
        self.people = people
        self.leads = leads
        self.lead_by_id: dict[str, Lead] = {lead.id: lead for lead in leads}
        self.by_cpf: dict[str, Person] = {p.cpf: p for p in people}
        self.by_phone: dict[str, Person] = {p.phone: p for p in people}
        self.by_email: dict[str, Person] = {p.email: p for p in people}

    def __len__(self) -> int:
        return len(self.leads)

    def scenario_counts(self) -> dict[str, int]:
        counts = Counter(lead.scenario for lead in self.leads)
        return {name: counts.get(name, 0) for name in SCENARIOS}

    def leads_for(self, scenario: str) -> list[Lead]:
        return [lead for lead in self.leads if lead.scenario == scenario]

    def expected_cpfs(self, lead: Lead) -> list[str]:
        """CPFs Diretrix yields for this lead, phone first (what the pipeline should find)."""
        cpfs: list[str] = []
        for idx in (lead.phone_person, lead.email_person):
            if idx is not None and self.people[idx].cpf not in cpfs:
                cpfs.append(self.people[idx].cpf)
        return cpfs

    # -- payloads (built on demand) ------------------------------------------------------
    def lead_payload(self, lead: Lead) -> dict[str, Any]:
        """The C2S ``GET /integration/leads/{id}`` body (docs/emulators.md#c2s)."""
        return {"data": lead_resource(lead, self.seed)}

    def dossier(self, cpf: str) -> dict[str, Any] | None:
        person = self.by_cpf.get(cpf)
        return None if person is None else work_dossier(person, self.seed)

    def diretrix_record(self, cpf: str) -> dict[str, Any] | None:
        person = self.by_cpf.get(cpf)
        return None if person is None else diretrix_person(person, self.seed)

    def leads_csv(self) -> str:
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(["lead_id", "scenario"])
        writer.writerows((lead.id, lead.scenario) for lead in self.leads)
        return buf.getvalue()


# --- generation -----------------------------------------------------------------------------
class _Generator:
    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.cpfs: set[str] = set()
        self.phones: set[str] = set()
        self.emails: set[str] = set()
        self.people: list[Person] = []

    def cpf(self) -> str:
        while True:
            base = f"{self.rng.randrange(1, 10**9):09d}"
            cpf = base + cpf_check_digits(base)
            if len(set(cpf)) > 1 and cpf not in self.cpfs:
                self.cpfs.add(cpf)
                return cpf

    def phone(self, ddd: str) -> str:
        while True:
            # Brazilian mobiles: DDD + 9 + 8 digits, first subscriber digit 6-9 (Anatel plan).
            number = f"{ddd}9{self.rng.randrange(6, 10)}{self.rng.randrange(10**7):07d}"
            if number not in self.phones:
                self.phones.add(number)
                return number

    def email(self, first: str, last: str) -> str:
        rng = self.rng
        local = _ascii_lower(f"{first}.{last}" if rng.random() < 0.6 else f"{first}{last}")
        domain = rng.choice(EMAIL_DOMAINS)
        candidate = f"{local}@{domain}"
        while candidate in self.emails:
            candidate = f"{local}{rng.randrange(1, 10_000)}@{domain}"
        self.emails.add(candidate)
        return candidate

    def full_name(self, sex: str) -> tuple[str, str, str]:
        rng = self.rng
        first = rng.choice(MALE_NAMES if sex == "M" else FEMALE_NAMES)
        middle, last = rng.choice(SURNAMES), rng.choice(SURNAMES)
        return first, last, f"{first} {middle} {last}"

    def person(self, work_fault: str | None = None) -> Person:
        rng = self.rng
        sex = "M" if rng.random() < 0.5 else "F"
        first, last, name = self.full_name(sex)
        city = rng.randrange(len(CITIES))
        birth = datetime(1950, 1, 1) + timedelta(days=rng.randrange(0, 54 * 365))
        mother = f"{rng.choice(FEMALE_NAMES)} {rng.choice(SURNAMES)} {last}"
        person = Person(
            index=len(self.people),
            cpf=self.cpf(),
            name=name,
            sex=sex,
            birth_date=birth.strftime("%d/%m/%Y"),
            mother=mother,
            phone=self.phone(CITIES[city][0]),
            email=self.email(first, last),
            city=city,
            work_fault=work_fault,
        )
        self.people.append(person)
        return person

    def stranger_contacts(self) -> tuple[str, str, str, int]:
        """A name, phone and email that belong to nobody Diretrix or Work knows."""
        sex = "M" if self.rng.random() < 0.5 else "F"
        first, last, name = self.full_name(sex)
        city = self.rng.randrange(len(CITIES))
        return name, self.phone(CITIES[city][0]), self.email(first, last), city


def _scenario_list(n: int, rng: random.Random) -> list[str]:
    """Exactly-proportioned scenario labels (largest remainder), shuffled deterministically."""
    raw = {name: share * n for name, share in SCENARIO_MIX.items()}
    counts = {name: int(value) for name, value in raw.items()}
    by_remainder = sorted(raw, key=lambda name: raw[name] - counts[name], reverse=True)
    for name in by_remainder[: n - sum(counts.values())]:
        counts[name] += 1
    labels = [name for name in SCENARIOS for _ in range(counts[name])]
    rng.shuffle(labels)
    return labels


def generate(seed: int = DEFAULT_SEED, n_leads: int = DEFAULT_LEADS) -> Dataset:
    """Build the dataset (uncached; see :func:`get_dataset`)."""
    if n_leads < len(SCENARIOS):
        raise ValueError(f"n_leads must be >= {len(SCENARIOS)} to cover every scenario")
    gen = _Generator(seed)
    rng = gen.rng
    start = datetime(2025, 1, 6, 8, 0, tzinfo=BRT)
    leads: list[Lead] = []
    work_errors = 0
    phone: str | None  # phone_only / email_only leads may lack the other contact
    email: str | None
    for i, scenario in enumerate(_scenario_list(n_leads, rng)):
        lead_id = f"{rng.getrandbits(128):032x}"
        created = start + timedelta(seconds=i * 1_800 + rng.randrange(1_800))
        phone_person = email_person = None
        if scenario == "not_found":
            name, phone, email, city = gen.stranger_contacts()
        elif scenario == "different_people":
            a, b = gen.person(), gen.person()
            name, phone, email, city = a.name, a.phone, b.email, a.city
            phone_person, email_person = a.index, b.index
        elif scenario == "phone_only":
            a = gen.person()
            _, _, stranger_email, _ = gen.stranger_contacts()
            # A third of these leads have no email at all (C2S fields are optional, docs/emulators.md#c2s).
            email = stranger_email if rng.random() < 2 / 3 else None
            name, phone, city, phone_person = a.name, a.phone, a.city, a.index
        elif scenario == "email_only":
            a = gen.person()
            _, stranger_phone, _, _ = gen.stranger_contacts()
            phone = stranger_phone if rng.random() < 2 / 3 else None
            name, email, city, email_person = a.name, a.email, a.city, a.index
        else:  # same_person, work_error, send_error: phone and email resolve to one person
            fault = None
            if scenario == "work_error":
                fault = "not_found" if work_errors % 2 == 0 else "error"
                work_errors += 1
            a = gen.person(work_fault=fault)
            name, phone, email, city = a.name, a.phone, a.email, a.city
            phone_person = email_person = a.index
        leads.append(
            Lead(
                id=lead_id,
                internal_id=100_000 + i,
                scenario=scenario,
                name=name,
                phone=phone,
                email=email,
                phone_person=phone_person,
                email_person=email_person,
                created_at=created.isoformat(timespec="seconds"),
                city=city,
            )
        )
    return Dataset(seed, gen.people, leads)


@functools.cache
def get_dataset(seed: int = DEFAULT_SEED, n_leads: int = DEFAULT_LEADS) -> Dataset:
    """The dataset for ``seed``, built once per process (all emulators in a process share it)."""
    return generate(seed, n_leads)


# --- payload builders -----------------------------------------------------------------------
def _brl(value: float) -> str:
    """350000.0 -> "350.000,00" (pt-BR money text)."""
    return f"{value:,.2f}".replace(",", "_").replace(".", ",").replace("_", ".")


def lead_resource(lead: Lead, seed: int) -> dict[str, Any]:
    """The JSON:API-ish lead object of C2S (docs/emulators.md#c2s) (fields the pipeline does not read kept)."""
    rng = random.Random(seed * SEED_STRIDE + 500_000 + lead.internal_id)
    ddd, city, uf, hoods = CITIES[lead.city]
    price = rng.randrange(200, 3_000) * 1_000.0
    hood = rng.choice(hoods)
    return {
        "type": "lead",
        "id": lead.id,
        "internal_id": lead.internal_id,
        "attributes": {
            "customer": {
                "id": f"{rng.getrandbits(64):016x}",
                "name": lead.name,
                "email": lead.email,
                "phone": None if lead.phone is None else f"55{lead.phone}",
                "phone2": None,
                "phone_global": None if lead.phone is None else f"+55{lead.phone}",
                "neighbourhood": hood,
            },
            "product": {
                "id": f"{rng.getrandbits(64):016x}",
                "description": f"Apartamento {rng.randrange(1, 5)} dormitórios - {hood}",
                "prop_ref": f"AP{rng.randrange(1000, 99999)}",
                "price": _brl(price),
                "price_float": price,
                "brand": None,
                "model": None,
                "license_plate": None,
                "neighbourhood": hood,
                "city": f"{city}/{uf}",
            },
            "lead_source": {"id": 493, "name": "Google Ads"},
            "channel": {"id": 1, "name": "Site"},
            "lead_status": {"id": 1, "alias": "novo", "name": "Novo"},
            "funnel_status": {"id": 1, "alias": "novo"},
            "seller": {
                "id": f"{rng.getrandbits(64):016x}",
                "name": "CORRETOR EMULADO",
                "email": "corretor@emulador.example",
                "phone": f"55{ddd}30000000",
                "company": "Imobiliária Emulada",
            },
            "description": "Lead de teste gerado pelo emulador",
            "observation": None,
            "tags": [],
            "created_at": lead.created_at,
            "updated_at": lead.created_at,
            "last_activity_date": lead.created_at,
            "read_at": None,
            "replied_at": None,
            "archive_details": {"archived": False},
            "done_details": {"done": False},
            "messages": [],
            "log": [],
        },
    }


def _power_band(renda: float) -> tuple[str, str, str]:
    for low, high, code, label in POWER_BANDS:
        if high is None or renda < high:
            text = f"De R$ {low:.0f} até R$ {high:.0f}" if high else f"Acima de R$ {low:.0f}"
            return code, label, text
    raise AssertionError("unreachable")  # pragma: no cover


def _risk(score: int) -> str:
    for threshold, label in ((900, "BAIXISSIMO"), (700, "BAIXO"), (500, "MEDIO"), (300, "ALTO")):
        if score >= threshold:
            return label
    return "ALTISSIMO"


def work_dossier(person: Person, seed: int) -> dict[str, Any]:
    """The Work API ``modulo=cpf`` body for ``person`` (shape: docs/emulators.md#work-api)."""
    rng = random.Random(seed * SEED_STRIDE + person.index)
    ddd, city, uf, hoods = CITIES[person.city]
    renda = round(rng.lognormvariate(8.6, 0.7), 2)  # median ≈ R$ 5,400
    code, power_label, band = _power_band(renda)
    renda_txt = f"{renda:.2f}".replace(".", ",")
    score_a, score_b = rng.randrange(150, 1000), rng.randrange(150, 1000)
    first_surname = person.name.split()[-1]

    phones: list[dict[str, str | None]] = [
        {
            "telefone": person.phone,
            "status": "ATIVO",
            "tipo": "TELEFONE MÓVEL",
            "operadora": rng.choice(OPERATORS),
            "whatsapp": "SIM",
        }
    ]
    for _ in range(rng.randrange(0, 4)):
        landline = rng.random() < 0.5
        number = (
            f"{ddd}{rng.randrange(2, 6)}{rng.randrange(10**7):07d}"
            if landline
            else f"{ddd}9{rng.randrange(6, 10)}{rng.randrange(10**7):07d}"
        )
        phones.append(
            {
                "telefone": number,
                "status": "ATIVO" if rng.random() < 0.8 else "NO",
                "tipo": rng.choice(("TELEFONE RESIDENCIAL", "COMERCIAL"))
                if landline
                else "CELULAR",
                "operadora": rng.choice(OPERATORS),
                "whatsapp": None if landline or rng.random() < 0.5 else "SIM",
            }
        )
    local, domain = person.email.split("@")
    emails = [
        {
            "email": person.email,
            "prioridade": "MUITO ALTA",
            "qualidade": rng.choice(QUALITIES[:2]),
            "emailPessoal": "SIM",
            "blacklist": "NÃO",
        }
    ]
    for k in range(rng.randrange(0, 3)):
        emails.append(
            {
                "email": f"{local}{k + 1}@{rng.choice(EMAIL_DOMAINS)}",
                "prioridade": PRIORITIES[k + 1],
                "qualidade": rng.choice(QUALITIES),
                "emailPessoal": rng.choice(("SIM", "NAO")),
                "blacklist": "NÃO",
            }
        )
    addresses = []
    for _ in range(rng.randrange(1, 4)):
        street_type, street = rng.choice(STREETS)
        addresses.append(
            {
                "tipoLogradouro": street_type,
                "logradouro": street,
                "logradouroNumero": str(rng.randrange(1, 3000)),
                "complemento": rng.choice(("", "", f"APTO {rng.randrange(11, 200)}", "CASA 2")),
                "bairro": rng.choice(hoods),
                "cidade": city,
                "uf": uf,
                "cep": f"{rng.randrange(1_000_000, 99_999_999):08d}",
            }
        )
    companies = []
    for _ in range(rng.choice((0, 0, 1, 1, 2, 3))):
        base = f"{rng.randrange(10**8):08d}0001"
        kind, relation = rng.choice(COMPANY_RELATIONS)
        companies.append(
            {
                "cnpj": base + cnpj_check_digits(base),
                "tipoRelacao": kind,
                "relacao": relation,
                "admissao": f"{rng.randrange(1, 29):02d}/{rng.randrange(1, 13):02d}/{rng.randrange(2000, 2024)}",
                "demissao": "31/12/9999",
            }
        )
    return {
        "status": 200,
        "foto": {"foto": None, "assinatura": None, "caracteristicas": []},
        "DadosBasicos": {
            "nome": person.name,
            "cpf": person.cpf,
            "cns": f"7{rng.randrange(10**14):014d}",
            "dataNascimento": person.birth_date,
            "sexo": "M - MASCULINO" if person.sex == "M" else "F - FEMININO",
            "cor": rng.choice(("BRANCA", "PARDA", "PRETA", "AMARELA")),
            "nomeMae": person.mother,
            "nomePai": f"{rng.choice(MALE_NAMES)} {first_surname}",
            "municipioNascimento": city,
            "escolaridade": rng.choice(EDUCATION),
            "estadoCivil": rng.choice(MARITAL),
            "nacionalidade": "BRASILEIRA",
            "conjuge": [],
            "obito": {"obito": "NÃO", "dataObito": "Não consta."},
            "situacaoCadastral": {
                "codigoSituacaoCadastral": "2",
                "descricaoSituacaoCadastral": "REGULAR",
                "dataSituacaoCadastral": "2023-01-15 00:00:00",
            },
        },
        "DadosEconomicos": {
            "renda": renda_txt,
            "rendaPresumida": renda_txt,
            "poderAquisitivo": {
                "codigoPoderAquisitivo": code,
                "poderAquisitivoDescricao": power_label,
                "rendaPoderAquisitivo": renda_txt,
                "codigoFaixaRenda": code,
                "faixaPoderAquisitivo": band,
            },
            "score": {
                "scoreCSB": str(score_b),
                "scoreCSBFaixaRisco": _risk(score_b),
                "scoreCSBA": str(score_a),
                "scoreCSBAFaixaRisco": f"{_risk(score_a)} RISCO",
            },
            "serasaMosaic": {"codigoMosaic": "B05", "descricaoMosaic": "Sintético"},
        },
        "profissao": {"cbo": "252505", "cboDescricao": "Analista", "pis": None},
        "empregos": [],
        "empresas": companies,
        "registroGeral": {"numero": None, "orgaoEmissor": f"SSP-{uf}", "dataEmissao": None},
        "tituloEleitor": {"tituloEleitorNumero": None, "zonaTitulo": None, "secaoTitulo": None},
        "enderecos": addresses,
        "telefones": phones,
        "emails": emails,
        "parentes": [{"nomeParente": person.mother, "cpfParente": None, "grauParentesco": "MAE"}],
        "DadosImposto": [],
        "beneficios": [],
        "listaDocumentos": {"CNS": None, "outros": None},
        "imunoBiologicos": [],
        "pep": [],
        "vizinhos": [],
        "internet": {},
        "comprasId": [],
        "perfilConsumo": {},
        "servidor_siape": {"ID_Servidor": "", "Registros_Servidor": []},
        "flags": {
            "__pessoa_exposta_politicamente__": False,
            "__beneficiario_auxilios__": False,
            "__servidor_publico_siape__": False,
        },
        "debug_info": [],
    }


def diretrix_person(person: Person, seed: int) -> dict[str, Any]:
    """Diretrix ``GET /Consultas/Pessoa/{cpf}`` (field names: docs/emulators.md#diretrix, typo kept)."""
    dossier = work_dossier(person, seed)
    born = datetime.strptime(person.birth_date, "%d/%m/%Y").replace(tzinfo=UTC)
    age = (datetime(2025, 11, 14, tzinfo=UTC) - born).days // 365
    return {
        "nome": person.name,
        "cpf": person.cpf,
        "rg": None,
        "rgOrgaoEmissor": None,
        "dataNascimento": person.birth_date,
        "idade": str(age),
        "signo": None,
        "sexo": "MASCULINO" if person.sex == "M" else "FEMININO",
        "mae": person.mother,
        "telefones": [
            {
                "numero": t["telefone"][2:],
                "ddd": t["telefone"][:2],
                "operadora": t["operadora"],
                "tipo": t["tipo"],
                "ranking": i + 1,
            }
            for i, t in enumerate(dossier["telefones"])
        ],
        "emails": [
            {"endereco": e["email"], "ranking": i + 1} for i, e in enumerate(dossier["emails"])
        ],
        "enderecos": [
            {
                "logadouro": a["logradouro"],
                "numero": a["logradouroNumero"],
                "bairro": a["bairro"],
                "cidade": a["cidade"],
                "uf": a["uf"],
                "cep": a["cep"],
                "complemento": a["complemento"],
                "ranking": i + 1,
                "logadouroTipo": a["tipoLogradouro"],
            }
            for i, a in enumerate(dossier["enderecos"])
        ],
    }


# --- CLI ------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m service.emulators.dataset",
        description="Write the seeded lead list (lead_id,scenario) the emulators serve.",
    )
    parser.add_argument("--out", type=Path, help="CSV path (default: stdout)")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument("--leads", type=int, default=DEFAULT_LEADS, help="number of leads")
    args = parser.parse_args(argv)
    if args.leads < len(SCENARIOS):
        parser.error(f"--leads must be >= {len(SCENARIOS)} to cover every scenario")
    text = generate(args.seed, args.leads).leads_csv()
    if args.out is None:
        sys.stdout.write(text)
        return 0
    try:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text, encoding="utf-8")
    except OSError as exc:
        print(f"error: cannot write {args.out}: {exc.strerror}", file=sys.stderr)
        return 1
    print(f"wrote {args.leads} leads to {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
