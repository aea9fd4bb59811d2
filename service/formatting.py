"""Step 4's message text and the Work-payload → database-row transformations.

A port of the original's ``format_enriched_message`` and ``multiply_range_values``
(Rust ``handlers.rs``): same section headers, line shapes, limits (3 emails, 3 phones,
2 addresses, 3 companies) and the ×1.9 income adjustment, so messages posted to C2S read
exactly as before. Pure functions, no I/O: step 4 is CPU only.
"""

from __future__ import annotations

import re
from datetime import date, datetime
from typing import Any

INCOME_MULTIPLIER = 1.9
SAME_PERSON_HEADER = "📞📧 Telefone e e-mail da mesma pessoa\n\n"
PERSON_SEPARATOR = "\n---\n\n"

#: scoreCSBAFaixaRisco → risk score (original ``db_storage.rs``); matched on the first word.
RISK_MAP: dict[str, float] = {
    "BAIXISSIMO": 0.1,
    "BAIXO": 0.3,
    "MEDIO": 0.5,
    "ALTO": 0.7,
    "ALTISSIMO": 0.9,
}

_RANGE_VALUE = re.compile(r"R\$\s*(\d+)")


def _s(v: Any) -> str | None:
    """A JSON value as text when it is a string or a number (the original took strings only)."""
    if isinstance(v, str):
        return v
    if isinstance(v, bool) or v is None:
        return None
    if isinstance(v, int | float):
        return str(v)
    return None


def _obj(v: Any) -> dict[str, Any]:
    return v if isinstance(v, dict) else {}


def _list(v: Any) -> list[Any]:
    return v if isinstance(v, list) else []


def multiply_range_values(range_str: str, multiplier: float = INCOME_MULTIPLIER) -> str:
    """Multiply every ``R$ N`` in a range: "De R$ 1630 até R$ 4082" → "De R$ 3097.00 até R$ 7755.80"."""
    return _RANGE_VALUE.sub(lambda m: f"R$ {float(m.group(1)) * multiplier:.2f}", range_str)


def parse_renda(renda: Any) -> float | None:
    """``"8500,50"`` → 8500.5; None when absent or not a number."""
    text = _s(renda)
    if text is None:
        return None
    try:
        return float(text.strip().replace(",", "."))
    except ValueError:
        return None


def format_enriched_message(work: dict[str, Any], multiplier: float = INCOME_MULTIPLIER) -> str:
    """One person's block of the C2S message, from a Work ``modulo=cpf`` payload."""
    lines: list[str] = ["✅ DADOS PESSOAIS\n"]
    basic = work.get("DadosBasicos")
    if isinstance(basic, dict):
        for key, label in (
            ("nome", "Nome"),
            ("cpf", "CPF"),
            ("dataNascimento", "Data Nascimento"),
            ("sexo", "Sexo"),
            ("nomeMae", "Mãe"),
        ):
            val = _s(basic.get(key))
            if val is not None:
                lines.append(f"{label}: {val}\n")

    econ = work.get("DadosEconomicos")
    if isinstance(econ, dict):
        lines.append("\n💰 DADOS FINANCEIROS\n")
        renda_raw = _s(econ.get("renda"))
        if renda_raw is not None:
            renda = parse_renda(renda_raw)
            lines.append(
                f"Renda: R$ {renda * multiplier:.2f}\n"
                if renda is not None
                else f"Renda: R$ {renda_raw}\n"
            )
        poder = econ.get("poderAquisitivo")
        if isinstance(poder, dict):
            desc = _s(poder.get("poderAquisitivoDescricao"))
            if desc is not None:
                lines.append(f"Poder Aquisitivo: {desc}\n")
            faixa = _s(poder.get("faixaPoderAquisitivo"))
            if faixa is not None:
                lines.append(f"Faixa de Renda: {multiply_range_values(faixa, multiplier)}\n")
        score = econ.get("score")
        if isinstance(score, dict):
            val = _s(score.get("scoreCSBA"))
            if val is not None:
                lines.append(f"Score de Crédito: {val}\n")
            risco = _s(score.get("scoreCSBAFaixaRisco"))
            if risco is not None:
                lines.append(f"Risco: {risco}\n")

    emails = _list(work.get("emails"))
    if emails:
        lines.append("\n📧 EMAILS\n")
        for i, e in enumerate(emails[:3], 1):
            addr = _s(_obj(e).get("email"))
            if addr is not None:
                prio = _s(_obj(e).get("prioridade")) or "N/A"
                lines.append(f"{i}. {addr} ({prio})\n")

    phones = _list(work.get("telefones"))
    if phones:
        lines.append("\n📱 TELEFONES\n")
        for i, p in enumerate(phones[:3], 1):
            p = _obj(p)
            tel = _s(p.get("telefone"))
            if tel is not None:
                tipo = _s(p.get("tipo")) or "N/A"
                icon = "✅" if _s(p.get("whatsapp")) == "SIM" else ""
                lines.append(f"{i}. {tel} - {tipo} {icon}\n")

    addresses = _list(work.get("enderecos"))
    if addresses:
        lines.append("\n🏠 ENDEREÇOS\n")
        for i, a in enumerate(addresses[:2], 1):
            a = _obj(a)
            g = {
                k: _s(a.get(k)) or ""
                for k in ("logradouro", "logradouroNumero", "bairro", "cidade", "uf", "cep")
            }
            lines.append(
                f"{i}. {g['logradouro']} {g['logradouroNumero']}, {g['bairro']} - "
                f"{g['cidade']}/{g['uf']} - CEP: {g['cep']}\n"
            )

    companies = _list(work.get("empresas"))
    if companies:
        lines.append("\n🏢 EMPRESAS\n")
        for i, c in enumerate(companies[:3], 1):
            c = _obj(c)
            lines.append(
                f"{i}. CNPJ: {_s(c.get('cnpj')) or ''} - {_s(c.get('relacao')) or 'SOCIO'}\n"
            )
    return "".join(lines)


def build_message(
    payloads: list[dict[str, Any]], same_person: bool, multiplier: float = INCOME_MULTIPLIER
) -> str:
    """The full message: same-person header when phone and email agreed, people split by ---."""
    head = SAME_PERSON_HEADER if same_person else ""
    return head + PERSON_SEPARATOR.join(format_enriched_message(p, multiplier) for p in payloads)


# --- transformations for storage -------------------------------------------------------------


def risk_score(faixa: Any) -> float | None:
    """``"BAIXO RISCO"`` → 0.3 (first word, accents ignored); None when unknown."""
    text = _s(faixa)
    if not text:
        return None
    word = text.strip().split()[0].upper()
    word = word.translate(str.maketrans("ÍÉÁÓÚÂÊÔÃÕÇ", "IEAOUAEOAOC"))
    return RISK_MAP.get(word)


def sex_code(sexo: Any) -> str | None:
    """``"M - MASCULINO"`` → ``"M"``."""
    text = (_s(sexo) or "").strip()
    return text[0].upper() if text else None


def parse_br_date(value: Any) -> date | None:
    """``DD/MM/YYYY`` → date (ISO when serialised); None when absent or invalid."""
    text = (_s(value) or "").strip()
    if not text:
        return None
    try:
        return datetime.strptime(text, "%d/%m/%Y").date()
    except ValueError:
        return None


def phone_type(tipo: Any) -> str:
    """MÓVEL/MOVEL → mobile, RESIDENCIAL → landline, anything else → mobile (as the original)."""
    text = (_s(tipo) or "").upper()
    if "RESIDENCIAL" in text:
        return "landline"
    return "mobile"


def _int(v: Any) -> int | None:
    text = _s(v)
    if text is None:
        return None
    try:
        return int(float(text.replace(",", ".")))
    except ValueError:
        return None


def _clean(v: Any) -> str | None:
    text = _s(v)
    if text is None:
        return None
    text = text.strip()
    return text or None


def person_record(work: dict[str, Any], multiplier: float = INCOME_MULTIPLIER) -> dict[str, Any]:
    """Everything step 5 stores for one person, derived from a Work payload.

    Returns ``{"party", "financial", "contacts", "addresses"}`` with database-ready values.
    """
    basic = _obj(work.get("DadosBasicos"))
    econ = _obj(work.get("DadosEconomicos"))
    score = _obj(econ.get("score"))
    poder = _obj(econ.get("poderAquisitivo"))
    name = _clean(basic.get("nome"))
    father = _clean(basic.get("nomePai"))
    party_meta = {
        k: v
        for k, v in {
            "cor": _clean(basic.get("cor")),
            "municipio_nascimento": _clean(basic.get("municipioNascimento")),
            "cns": _clean(basic.get("cns")),
        }.items()
        if v is not None
    }
    party = {
        "full_name": name,
        "canonical_name": name.upper() if name else None,
        "sex": sex_code(basic.get("sexo")),
        "birth_date": parse_br_date(basic.get("dataNascimento")),
        "mother_name": _clean(basic.get("nomeMae")),
        "father_name": None if father in (None, "SEM INFORMAÇÃO", "SEM INFORMACAO") else father,
        "nationality": _clean(basic.get("nacionalidade")),
        "marital_status": _clean(basic.get("estadoCivil")),
        "education_level": _clean(basic.get("escolaridade")),
        "metadata": party_meta,
    }
    renda = parse_renda(econ.get("renda"))
    financial = {
        "reported_income": round(renda * multiplier, 2) if renda is not None else None,
        "credit_score": _int(score.get("scoreCSBA")),
        "risk_score": risk_score(score.get("scoreCSBAFaixaRisco")),
        "metadata": {
            k: v
            for k, v in {
                "poder_aquisitivo": _clean(poder.get("poderAquisitivoDescricao")),
                "faixa_poder_aquisitivo": _clean(poder.get("faixaPoderAquisitivo")),
                "serasa_mosaic": econ.get("serasaMosaic"),
            }.items()
            if v is not None
        },
    }
    contacts: list[dict[str, Any]] = []
    seen: set[tuple[str, str]] = set()
    emails = [e for e in _list(work.get("emails")) if _clean(_obj(e).get("email"))]
    for i, e in enumerate(emails):
        value = _clean(e.get("email")).lower()  # type: ignore[union-attr]
        if ("email", value) in seen:
            continue
        seen.add(("email", value))
        contacts.append(
            {
                "contact_type": "email",
                "value": value,
                "is_primary": i == 0,
                "is_verified": _s(e.get("qualidade")) == "BOM",
                "is_whatsapp": False,
                "carrier": None,
                "metadata": {
                    k: e.get(k)
                    for k in ("prioridade", "qualidade", "emailPessoal", "blacklist")
                    if e.get(k) is not None
                },
            }
        )
    phones = [p for p in _list(work.get("telefones")) if _clean(_obj(p).get("telefone"))]
    for i, p in enumerate(phones):
        value = re.sub(r"\D", "", _clean(p.get("telefone")) or "")
        if not value or ("phone", value) in seen:
            continue
        seen.add(("phone", value))
        contacts.append(
            {
                "contact_type": "phone",
                "value": value,
                "is_primary": i == 0,
                "is_verified": False,
                "is_whatsapp": _s(p.get("whatsapp")) == "SIM",
                "carrier": _clean(p.get("operadora")),
                "metadata": {
                    k: v
                    for k, v in {
                        "status": _clean(p.get("status")),
                        "tipo": phone_type(p.get("tipo")),
                    }.items()
                    if v is not None
                },
            }
        )
    addresses: list[dict[str, Any]] = []
    seen_addr: set[tuple[str, str, str]] = set()
    for i, a in enumerate(_list(work.get("enderecos"))):
        a = _obj(a)
        # key columns are never NULL: NULLs are distinct in unique constraints (SQL standard)
        key = (
            _clean(a.get("logradouro")) or "",
            _clean(a.get("logradouroNumero")) or "",
            re.sub(r"\D", "", _clean(a.get("cep")) or ""),
        )
        if key in seen_addr or key == ("", "", ""):
            continue
        seen_addr.add(key)
        uf = _clean(a.get("uf"))
        addresses.append(
            {
                "street_type": _clean(a.get("tipoLogradouro")),
                "street": key[0],
                "number": key[1],
                "complement": _clean(a.get("complemento")),
                "neighborhood": _clean(a.get("bairro")),
                "city": _clean(a.get("cidade")),
                "state": uf.upper()[:2] if uf else None,
                "zip_code": key[2],
                "is_primary": i == 0,
                "is_current": i == 0,
                "address_type": "residential",
            }
        )
    return {"party": party, "financial": financial, "contacts": contacts, "addresses": addresses}
