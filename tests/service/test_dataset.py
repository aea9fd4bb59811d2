"""The seeded dataset: determinism, valid documents, scenario semantics, leads.csv freshness."""

from __future__ import annotations

import csv
import re
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import pytest

from service.emulators import dataset as ds_mod
from service.emulators.dataset import SCENARIOS, generate, get_dataset

REPO = Path(__file__).resolve().parents[2]
# Anatel's list of valid area codes (DDD) — an independent check on generated phones.
VALID_DDDS = {
    *range(11, 20), 21, 22, 24, 27, 28, *range(31, 36), 37, 38, *range(41, 47), 47, 48, 49,
    51, 53, 54, 55, *range(61, 70), 71, 73, 74, 75, 77, 79, *range(81, 90), *range(91, 100),
}  # fmt: skip


def independent_cpf_ok(cpf: str) -> bool:
    """CPF validity written independently of the module: the "×10 mod 11 mod 10" form."""
    if not re.fullmatch(r"\d{11}", cpf) or cpf == cpf[0] * 11:
        return False
    d = list(map(int, cpf))
    first = sum(d[i] * (10 - i) for i in range(9)) * 10 % 11 % 10
    second = sum(d[i] * (11 - i) for i in range(10)) * 10 % 11 % 10
    return d[9] == first and d[10] == second


def independent_cnpj_ok(cnpj: str) -> bool:
    d = list(map(int, cnpj))
    w1 = [5, 4, 3, 2, 9, 8, 7, 6, 5, 4, 3, 2]
    w2 = [6, *w1]
    c1 = 11 - sum(a * b for a, b in zip(d[:12], w1, strict=True)) % 11
    c2 = 11 - sum(a * b for a, b in zip(d[:13], w2, strict=True)) % 11
    return d[12] == (0 if c1 >= 10 else c1) and d[13] == (0 if c2 >= 10 else c2)


@pytest.fixture(scope="module")
def ds() -> ds_mod.Dataset:
    return get_dataset(42)


def test_independent_checker_agrees_on_known_cpfs() -> None:
    # Well-known published test CPFs (valid) and simple corruptions of them (invalid).
    assert independent_cpf_ok("52998224725")
    assert not independent_cpf_ok("52998224724")
    assert not independent_cpf_ok("11111111111")
    assert ds_mod.is_valid_cpf("52998224725") and not ds_mod.is_valid_cpf("52998224715")


def test_same_seed_same_dataset_other_seed_differs() -> None:
    a, b, c = generate(42, 500), generate(42, 500), generate(7, 500)
    assert a.leads == b.leads and a.people == b.people
    assert a.leads_csv() == b.leads_csv()
    assert a.dossier(a.people[3].cpf) == b.dossier(b.people[3].cpf)
    assert {lead.id for lead in a.leads}.isdisjoint({lead.id for lead in c.leads})


def test_get_dataset_is_cached_and_matches_generate(ds: ds_mod.Dataset) -> None:
    assert get_dataset(42) is ds
    assert ds.leads_csv() == generate(42).leads_csv()


def test_every_cpf_and_cnpj_valid_and_unique(ds: ds_mod.Dataset) -> None:
    cpfs = [p.cpf for p in ds.people]
    assert len(cpfs) == len(set(cpfs))
    bad = [cpf for cpf in cpfs if not independent_cpf_ok(cpf)]
    assert bad == []
    cnpjs = [e["cnpj"] for p in ds.people[:400] for e in ds.dossier(p.cpf)["empresas"]]
    assert cnpjs and all(independent_cnpj_ok(c) for c in cnpjs)


def test_phones_are_brazilian_mobiles_and_unique(ds: ds_mod.Dataset) -> None:
    phones = [p.phone for p in ds.people] + [lead.phone for lead in ds.leads if lead.phone]
    for phone in phones:
        assert re.fullmatch(r"\d{2}9[6-9]\d{7}", phone), phone
        assert int(phone[:2]) in VALID_DDDS, phone
    assert len({p.phone for p in ds.people}) == len(ds.people)


def test_leads_shape_and_ids(ds: ds_mod.Dataset) -> None:
    assert len(ds) >= 5000
    ids = [lead.id for lead in ds.leads]
    assert len(set(ids)) == len(ids)
    assert all(re.fullmatch(r"[0-9a-f]{32}", i) for i in ids)
    internal = [lead.internal_id for lead in ds.leads]
    assert len(set(internal)) == len(internal)
    body = ds.lead_payload(ds.leads[0])
    data = body["data"]
    assert data["type"] == "lead" and data["id"] == ds.leads[0].id
    cust = data["attributes"]["customer"]
    assert set(cust) >= {"name", "email", "phone"}
    assert re.fullmatch(r"55\d{11}", cust["phone"])
    assert data["attributes"]["created_at"].endswith("-03:00")
    for lead in ds.leads[:300]:
        if lead.email is not None:
            assert re.fullmatch(r"[a-z0-9.]+@[a-z0-9.]+\.[a-z]{2,}", lead.email)


def test_scenario_coverage_and_mix(ds: ds_mod.Dataset) -> None:
    counts = ds.scenario_counts()
    assert set(counts) == set(SCENARIOS)
    assert sum(counts.values()) == len(ds)
    assert min(counts.values()) >= 100  # every path well represented
    ok = sum(counts[s] for s in ("same_person", "different_people", "phone_only", "email_only"))
    assert ok / len(ds) >= 0.6  # mostly successful enrichments
    for name, share in ds_mod.SCENARIO_MIX.items():
        assert abs(counts[name] - share * len(ds)) <= 1


def test_scenario_semantics(ds: ds_mod.Dataset) -> None:
    """What Diretrix can resolve per scenario is what the scenario promises."""
    for lead in ds.leads:
        by_phone = ds.by_phone.get(lead.phone) if lead.phone else None
        by_email = ds.by_email.get(lead.email) if lead.email else None
        s = lead.scenario
        if s in ("same_person", "work_error", "send_error"):
            assert by_phone is not None and by_phone is by_email
            assert (by_phone.work_fault is not None) == (s == "work_error")
        elif s == "different_people":
            assert by_phone is not None and by_email is not None
            assert by_phone.cpf != by_email.cpf
            assert by_phone.work_fault is None and by_email.work_fault is None
        elif s == "phone_only":
            assert by_phone is not None and by_email is None
        elif s == "email_only":
            assert by_phone is None and by_email is not None
        else:
            assert s == "not_found" and by_phone is None and by_email is None
        found = [p.cpf for p in (by_phone, by_email) if p is not None]
        assert ds.expected_cpfs(lead) == list(dict.fromkeys(found))
    faults = {p.work_fault for p in ds.people if p.work_fault}
    assert faults == {"not_found", "error"}
    # Optional fields really are optional sometimes (C2S leads, docs/emulators.md#c2s).
    assert any(lead.email is None for lead in ds.leads_for("phone_only"))
    assert any(lead.phone is None for lead in ds.leads_for("email_only"))


def test_dossier_shape_matches_reference(ds: ds_mod.Dataset) -> None:
    for person in ds.people[:200]:
        d = ds.dossier(person.cpf)
        assert d["status"] == 200
        basic, econ = d["DadosBasicos"], d["DadosEconomicos"]
        assert basic["cpf"] == person.cpf and basic["nome"] == person.name
        assert basic["sexo"] in ("M - MASCULINO", "F - FEMININO")
        datetime.strptime(basic["dataNascimento"], "%d/%m/%Y")
        assert re.fullmatch(r"\d+,\d{2}", econ["renda"])
        renda = float(econ["renda"].replace(",", "."))
        band = econ["poderAquisitivo"]["faixaPoderAquisitivo"]
        m = re.fullmatch(r"De R\$ (\d+) até R\$ (\d+)|Acima de R\$ (\d+)", band)
        assert m, band
        if m.group(1):
            assert int(m.group(1)) <= renda < int(m.group(2))
        else:
            assert renda >= int(m.group(3))
        score = econ["score"]
        assert 0 <= int(score["scoreCSBA"]) <= 1000
        assert score["scoreCSBAFaixaRisco"].endswith(" RISCO")
        assert d["telefones"][0]["telefone"] == person.phone
        assert d["telefones"][0]["whatsapp"] == "SIM"
        assert all(set(t) == {"telefone", "status", "tipo", "operadora", "whatsapp"}
                   for t in d["telefones"])  # fmt: skip
        assert d["emails"][0]["email"] == person.email
        assert 1 <= len(d["enderecos"]) <= 3
        for addr in d["enderecos"]:
            assert re.fullmatch(r"\d{8}", addr["cep"]) and len(addr["uf"]) == 2
        assert isinstance(d["empresas"], list)
    rec = ds.diretrix_record(ds.people[0].cpf)
    assert rec["cpf"] == ds.people[0].cpf and "logadouro" in rec["enderecos"][0]
    assert ds.dossier("00000000000") is None


def test_leads_csv_is_fresh() -> None:
    path = REPO / "data" / "leads.csv"
    assert path.read_text(encoding="utf-8") == generate(42).leads_csv(), (
        "data/leads.csv is stale: run `python -m service.emulators.dataset --out data/leads.csv`"
    )
    with path.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0]) == ["lead_id", "scenario"]
    assert {r["scenario"] for r in rows} == set(SCENARIOS)


def test_cli_writes_csv_and_rejects_bad_input(tmp_path: Path) -> None:
    out = tmp_path / "sub" / "leads.csv"
    done = subprocess.run(
        [sys.executable, "-m", "service.emulators.dataset", "--out", str(out), "--leads", "50"],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert done.returncode == 0, done.stderr
    assert out.read_text() == generate(42, 50).leads_csv()
    bad = subprocess.run(
        [sys.executable, "-m", "service.emulators.dataset", "--leads", "3"],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert bad.returncode == 2 and "--leads must be >= 7" in bad.stderr
    with pytest.raises(ValueError, match="n_leads"):
        generate(42, 3)
