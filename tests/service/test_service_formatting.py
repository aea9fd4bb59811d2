"""Step 4's message and the storage transformations, against hand-computed expectations.

Expected strings are written out by hand from the original's format (docs/service.md#sources:
the Rust ``format_enriched_message``), not produced by the code under test.
"""

from __future__ import annotations

from datetime import date

import pytest

from service.formatting import (
    build_message,
    format_enriched_message,
    multiply_range_values,
    parse_br_date,
    parse_renda,
    person_record,
    phone_type,
    risk_score,
    sex_code,
)

PAYLOAD = {
    "status": 200,
    "DadosBasicos": {
        "nome": "MARIA DA SILVA",
        "cpf": "52998224725",
        "dataNascimento": "07/03/1985",
        "sexo": "F - FEMININO",
        "nomeMae": "ANA DA SILVA",
        "nomePai": "SEM INFORMAÇÃO",
        "cor": "PARDA",
    },
    "DadosEconomicos": {
        "renda": "8500,50",
        "poderAquisitivo": {
            "poderAquisitivoDescricao": "MEDIO ALTO",
            "faixaPoderAquisitivo": "De R$ 7018 até R$ 15000",
        },
        "score": {"scoreCSBA": "712", "scoreCSBAFaixaRisco": "BAIXO RISCO"},
    },
    "emails": [
        {"email": "Maria.Silva@Example.COM", "prioridade": "MUITO ALTA", "qualidade": "BOM"},
        {"email": "maria2@example.com", "prioridade": "MEDIA", "qualidade": "OTIMO"},
        {"email": "m3@example.com"},
        {"email": "m4@example.com", "prioridade": "BAIXA"},
    ],
    "telefones": [
        {
            "telefone": "11987654321",
            "tipo": "TELEFONE MÓVEL",
            "whatsapp": "SIM",
            "operadora": "VIVO",
        },
        {"telefone": "1133334444", "tipo": "TELEFONE RESIDENCIAL", "whatsapp": None},
    ],
    "enderecos": [
        {
            "tipoLogradouro": "R",
            "logradouro": "DAS FLORES",
            "logradouroNumero": "120",
            "bairro": "CENTRO",
            "cidade": "SAO PAULO",
            "uf": "SP",
            "cep": "01001000",
        },
        {
            "logradouro": "B",
            "logradouroNumero": "2",
            "bairro": "X",
            "cidade": "Y",
            "uf": "RJ",
            "cep": "2",
        },
        {
            "logradouro": "C",
            "logradouroNumero": "3",
            "bairro": "Z",
            "cidade": "W",
            "uf": "MG",
            "cep": "3",
        },
    ],
    "empresas": [{"cnpj": "11222333000181", "relacao": "SOCIO"}, {"cnpj": "99888777000166"}],
}

# 8500.50 × 1.9 = 16150.95; 7018 × 1.9 = 13334.20; 15000 × 1.9 = 28500.00
EXPECTED = (
    "✅ DADOS PESSOAIS\n"
    "Nome: MARIA DA SILVA\n"
    "CPF: 52998224725\n"
    "Data Nascimento: 07/03/1985\n"
    "Sexo: F - FEMININO\n"
    "Mãe: ANA DA SILVA\n"
    "\n💰 DADOS FINANCEIROS\n"
    "Renda: R$ 16150.95\n"
    "Poder Aquisitivo: MEDIO ALTO\n"
    "Faixa de Renda: De R$ 13334.20 até R$ 28500.00\n"
    "Score de Crédito: 712\n"
    "Risco: BAIXO RISCO\n"
    "\n📧 EMAILS\n"
    "1. Maria.Silva@Example.COM (MUITO ALTA)\n"
    "2. maria2@example.com (MEDIA)\n"
    "3. m3@example.com (N/A)\n"
    "\n📱 TELEFONES\n"
    "1. 11987654321 - TELEFONE MÓVEL ✅\n"
    "2. 1133334444 - TELEFONE RESIDENCIAL \n"
    "\n🏠 ENDEREÇOS\n"
    "1. DAS FLORES 120, CENTRO - SAO PAULO/SP - CEP: 01001000\n"
    "2. B 2, X - Y/RJ - CEP: 2\n"
    "\n🏢 EMPRESAS\n"
    "1. CNPJ: 11222333000181 - SOCIO\n"
    "2. CNPJ: 99888777000166 - SOCIO\n"
)


def test_message_matches_the_original_layout() -> None:
    assert format_enriched_message(PAYLOAD) == EXPECTED


def test_range_values_multiplied_as_in_the_rust_doc_comment() -> None:
    # The example in the original's doc comment.
    assert multiply_range_values("De R$ 1630 até R$ 4082", 1.9) == "De R$ 3097.00 até R$ 7755.80"
    assert multiply_range_values("Acima de R$15000", 2) == "Acima de R$ 30000.00"
    assert multiply_range_values("sem valores") == "sem valores"


def test_same_person_header_and_people_separator() -> None:
    one = format_enriched_message(PAYLOAD)
    assert build_message([PAYLOAD], True) == "📞📧 Telefone e e-mail da mesma pessoa\n\n" + one
    assert build_message([PAYLOAD, PAYLOAD], False) == one + "\n---\n\n" + one
    assert build_message([PAYLOAD], False) == one


def test_sections_are_omitted_when_the_payload_lacks_them() -> None:
    assert format_enriched_message({}) == "✅ DADOS PESSOAIS\n"
    msg = format_enriched_message({"DadosEconomicos": {"renda": "n/d"}, "emails": []})
    assert msg == "✅ DADOS PESSOAIS\n\n💰 DADOS FINANCEIROS\nRenda: R$ n/d\n"


def test_income_multiplier_is_configurable() -> None:
    msg = format_enriched_message({"DadosEconomicos": {"renda": "1000,00"}}, multiplier=1.0)
    assert "Renda: R$ 1000.00\n" in msg


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("8500,50", 8500.5),
        ("1000", 1000.0),
        (" 12,3 ", 12.3),
        ("abc", None),
        (None, None),
        (7, 7.0),
    ],
)
def test_parse_renda(text: object, value: float | None) -> None:
    assert parse_renda(text) == value


@pytest.mark.parametrize(
    ("faixa", "score"),
    [
        ("BAIXISSIMO RISCO", 0.1),
        ("BAIXO RISCO", 0.3),
        ("MEDIO RISCO", 0.5),
        ("MÉDIO RISCO", 0.5),
        ("ALTO RISCO", 0.7),
        ("ALTISSIMO RISCO", 0.9),
        ("DESCONHECIDO", None),
        ("", None),
        (None, None),
    ],
)
def test_risk_map(faixa: str | None, score: float | None) -> None:
    assert risk_score(faixa) == score


def test_small_transformations() -> None:
    assert sex_code("M - MASCULINO") == "M"
    assert sex_code("f - feminino") == "F"
    assert sex_code("") is None
    assert parse_br_date("07/03/1985") == date(1985, 3, 7)
    assert parse_br_date("31/02/1985") is None
    assert parse_br_date("1985-03-07") is None
    assert phone_type("TELEFONE MÓVEL") == "mobile"
    assert phone_type("TELEFONE MOVEL") == "mobile"
    assert phone_type("TELEFONE RESIDENCIAL") == "landline"
    assert phone_type("COMERCIAL") == "mobile"


def test_person_record() -> None:
    rec = person_record(PAYLOAD)
    party = rec["party"]
    assert party["full_name"] == "MARIA DA SILVA"
    assert party["canonical_name"] == "MARIA DA SILVA"
    assert party["sex"] == "F"
    assert party["birth_date"] == date(1985, 3, 7)
    assert party["birth_date"].isoformat() == "1985-03-07"
    assert party["mother_name"] == "ANA DA SILVA"
    assert party["father_name"] is None  # "SEM INFORMAÇÃO" is not a name
    assert party["metadata"] == {"cor": "PARDA"}
    fin = rec["financial"]
    assert fin["reported_income"] == 16150.95
    assert fin["credit_score"] == 712
    assert fin["risk_score"] == 0.3
    emails = [c for c in rec["contacts"] if c["contact_type"] == "email"]
    assert [e["value"] for e in emails] == [
        "maria.silva@example.com",
        "maria2@example.com",
        "m3@example.com",
        "m4@example.com",
    ]
    assert [e["is_primary"] for e in emails] == [True, False, False, False]
    # only "BOM" counts as verified, as in the original (OTIMO does not)
    assert [e["is_verified"] for e in emails] == [True, False, False, False]
    phones = [c for c in rec["contacts"] if c["contact_type"] == "phone"]
    assert [(p["value"], p["is_primary"], p["is_whatsapp"]) for p in phones] == [
        ("11987654321", True, True),
        ("1133334444", False, False),
    ]
    assert phones[0]["carrier"] == "VIVO"
    assert [p["metadata"]["tipo"] for p in phones] == ["mobile", "landline"]
    addrs = rec["addresses"]
    assert len(addrs) == 3
    assert (addrs[0]["street"], addrs[0]["number"], addrs[0]["zip_code"]) == (
        "DAS FLORES",
        "120",
        "01001000",
    )
    assert [a["is_primary"] for a in addrs] == [True, False, False]
    assert addrs[0]["state"] == "SP"


def test_person_record_deduplicates_and_never_uses_null_keys() -> None:
    rec = person_record(
        {
            "emails": [{"email": "A@x.com"}, {"email": "a@X.com"}],
            "telefones": [{"telefone": "(11) 9999-0000"}, {"telefone": "1199990000"}],
            "enderecos": [{"logradouro": "RUA"}, {"logradouro": "RUA"}, {}],
        }
    )
    assert [c["value"] for c in rec["contacts"]] == ["a@x.com", "1199990000"]
    assert rec["addresses"] == [
        {
            "street_type": None,
            "street": "RUA",
            "number": "",
            "complement": None,
            "neighborhood": None,
            "city": None,
            "state": None,
            "zip_code": "",
            "is_primary": True,
            "is_current": True,
            "address_type": "residential",
        }
    ]
    assert rec["financial"]["reported_income"] is None
